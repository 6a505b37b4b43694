//! The Dockerfile syntax, read the way BuildKit's parser (`frontend/dockerfile/parser`) and its
//! instruction layer (`frontend/dockerfile/instructions`) read it, into a [`Dockerfile`].
//!
//! Lines. Parser directives (`# syntax=...`, `# escape=\`` or `# escape=\\`, `# check=...`)
//! count only at the very top: the first line that is not a directive (an instruction, a blank
//! line, any other comment) ends them, so `# escape=\`` further down is an ordinary comment. A
//! directive may appear once. A line whose first non-blank character is `#` is a comment; inside
//! an instruction continued over several lines, comment lines and blank lines are dropped and the
//! instruction goes on. The escape character as the last non-blank character of a line
//! continues the instruction on the next line (blanks after it are allowed); it is removed and
//! the lines are joined as they are, without adding a space. An escape character preceded by
//! another one does not continue the line (BuildKit's rule). A UTF-8 byte-order mark and `\r`
//! line endings are accepted.
//!
//! Instructions. The name is case-insensitive. Flags (`--name=value`, `--name`) come right after
//! it and end at the first word that does not start with `--` (or at a lone `--`); their quotes
//! and escapes are removed as BuildKit does, and each instruction accepts only its own flags:
//! `FROM --platform`; `RUN --mount`, `--network`, `--security`, `--device`; `COPY --from`,
//! `--chown`, `--chmod`, `--link`, `--parents`, `--exclude`; `ADD --chown`, `--chmod`, `--link`,
//! `--checksum`, `--keep-git-dir`, `--unpack`, `--exclude`; `HEALTHCHECK --interval`,
//! `--timeout`, `--start-period`, `--start-interval`, `--retries`. Any other flag, on any
//! instruction, is an error naming it. A flag may be given once, except `--mount`, `--device`
//! and `--exclude`.
//!
//! Arguments stay as written: quotes, escapes and `$` are left in for [`crate::expand`] to
//! process at build time with the stage's variables. `FROM`, `EXPOSE`, and the shell forms of
//! `VOLUME`, `COPY` and `ADD` are split on blanks only (quotes do not group, as in BuildKit);
//! `ENV`, `LABEL` and `ARG` are split on blanks outside quotes (and not after the escape
//! character). `ENV name value...` (no `=` in the first word) is the legacy form: one variable,
//! the rest of the line its value. `WORKDIR`, `USER`, `STOPSIGNAL` and `MAINTAINER` take the
//! rest of the line.
//!
//! JSON (exec) form. `RUN`, `CMD`, `ENTRYPOINT`, `SHELL`, `VOLUME`, `COPY` and `ADD` accept a
//! JSON array of strings. Text that starts with `[` but is not valid JSON is the shell form (so
//! `CMD ['a']` runs `['a']` in the shell, as Docker does); a valid JSON array holding anything
//! but strings is an error, as in BuildKit. `SHELL` requires the JSON form.
//!
//! Here-documents. In `RUN`, `COPY` and `ADD` (and an `ONBUILD` of them), not in their JSON
//! form, every word `<<NAME`, `<<-NAME`, `<<'NAME'`, `<<"NAME"` (also `3<<NAME`) opens a
//! here-document; their bodies follow the instruction's last line, one after the other, each
//! up to a line that is exactly its delimiter (after removing leading tabs for `<<-`). Bodies are
//! kept verbatim (comments and escape characters included), every line ending in `\n`, with
//! leading tabs removed for `<<-`. A delimiter with any quote in it (`<<'EOF'`, `<<E"O"F`) sets
//! [`Heredoc::expand`] to false. What this parser produces:
//!
//! - `RUN <<EOF` (nothing else): [`Command::Shell`] holds `<<EOF` as written and `heredocs` the
//!   script. BuildKit runs such a body as the shell's input (`/bin/sh -c <body>`), or as an
//!   executable file when it starts with `#!`.
//! - `RUN python3 <<EOF` or `RUN <<A <<B` with a command: [`Command::Shell`] is the command line
//!   as written and the bodies are in `heredocs`; the builder gives the shell the command line
//!   followed by each body and its delimiter, as BuildKit does.
//! - `COPY <<EOF /dest` (and `ADD`): each here-document is a file named after its delimiter in
//!   [`CopySpec::heredocs`]; the `<<EOF` words are NOT in [`CopySpec::sources`], which holds
//!   only the real sources. A here-document as the destination is an error.
//! - `ONBUILD RUN <<EOF`: the trigger text is the instruction followed, for each body, by a line
//!   break, the body and the delimiter (BuildKit's form), so that it can be parsed again.
//!
//! Stages. `FROM [--platform=p] image [AS name]` starts a stage; names are lower-cased and must
//! match `[a-z][a-z0-9-_.]*`. `ARG`s before the first `FROM` are [`Dockerfile::global_args`];
//! any other instruction there is an error, as is a Dockerfile without `FROM`.
//!
//! Where this parser differs from BuildKit, on purpose: `CMD` and `ENTRYPOINT` with nothing at
//! all after them are errors (BuildKit accepts an empty shell form); flags on `STOPSIGNAL` are
//! errors (BuildKit ignores them); in the JSON form of `COPY`/`ADD` a `"<<EOF"` source is a
//! path (BuildKit makes it an empty here-document file); `EXPOSE` keeps the ports in the order
//! written (BuildKit sorts them; the image configuration is a set either way). As in BuildKit,
//! flags before `HEALTHCHECK NONE` are ignored, and an explicit zero duration
//! (`--interval=0s`, "use the default") is kept as `Some(0)`.
//!
//! Errors name the first line of the instruction and say what is wrong in words: "line 7: RUN
//! needs a command".

use crate::expand;
use crate::{
    ArgDecl, Command, CopySpec, Dockerfile, Error, Healthcheck, Heredoc, Instruction, Kind, Stage,
};

/// Parses a Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, Error> {
    parse_with(text, &|_| None)
}

/// What [`crate::template`] recognises in place of an instruction: a logical line (trimmed)
/// that `placeholder` maps to a kind becomes an instruction of that kind.
pub(crate) type Placeholder<'a> = &'a dyn Fn(&str) -> Option<Kind>;

pub(crate) fn parse_with(text: &str, placeholder: Placeholder) -> Result<Dockerfile, Error> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut directives = Directives::default();
    let mut escape = '\\';
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line_no = i + 1;
        let mut raw = lines[i];
        if i == 0 {
            raw = raw.strip_prefix('\u{feff}').unwrap_or(raw);
        }
        i += 1;
        let first = trim_newline(raw).trim_start();
        if let Some((name, value)) = directives
            .parse_line(first)
            .map_err(|m| Error::new(line_no, m))?
        {
            if name == "escape" {
                escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    other => {
                        return Err(Error::new(
                            line_no,
                            format!("the escape directive takes \\ or `, not '{other}'"),
                        ))
                    }
                };
            }
            continue;
        }
        let content = if is_comment(first) { "" } else { first };
        let (joined, mut ended) = trim_continuation(content, escape);
        if ended && joined.is_empty() {
            continue;
        }
        let mut buf = joined.to_string();
        while !ended && i < lines.len() {
            let next = trim_newline(lines[i]);
            i += 1;
            if is_comment(next) || next.trim_start().is_empty() {
                continue;
            }
            let (part, end) = trim_continuation(next, escape);
            buf.push_str(part);
            ended = end;
        }
        let source = buf.trim().to_string();

        let parsed = match placeholder(&source) {
            Some(kind) => Parsed::Instruction(kind),
            None => {
                let header = Header::split(&buf, escape).map_err(|m| Error::new(line_no, m))?;
                let heredocs = if header
                    .can_contain_heredoc()
                    .map_err(|m| Error::new(line_no, m))?
                    && buf.contains("<<")
                {
                    read_heredocs(&buf, &lines, &mut i, line_no)?
                } else {
                    Vec::new()
                };
                header
                    .into_parsed(&buf, heredocs, escape)
                    .map_err(|m| Error::new(line_no, m))?
            }
        };

        match parsed {
            Parsed::Stage(stage) => stages.push(Stage {
                line: line_no,
                ..stage
            }),
            Parsed::Instruction(Kind::Arg(args)) if stages.is_empty() => global_args.extend(args),
            Parsed::Instruction(kind) => {
                let Some(stage) = stages.last_mut() else {
                    let message = match kind {
                        Kind::Environments | Kind::Components => {
                            format!("{source} must come after the first FROM")
                        }
                        _ => format!(
                            "{} comes before the first FROM: only ARG may come before FROM",
                            display_name(&source)
                        ),
                    };
                    return Err(Error::new(line_no, message));
                };
                stage.instructions.push(Instruction {
                    line: line_no,
                    source,
                    kind,
                });
            }
        }
    }
    if stages.is_empty() {
        let last = lines.len().max(1);
        let nothing = lines.iter().all(|l| {
            let t = trim_newline(l).trim_start();
            t.is_empty() || is_comment(t)
        });
        let message = if nothing {
            "the Dockerfile has no instructions: it needs at least a FROM"
        } else {
            "the Dockerfile has no FROM: a build starts with FROM <image>"
        };
        return Err(Error::new(last, message));
    }
    Ok(Dockerfile {
        escape,
        global_args,
        stages,
    })
}

/// What one logical line is: a `FROM` starting a stage, or an instruction.
enum Parsed {
    Stage(Stage),
    Instruction(Kind),
}

/// The instruction name as written, upper-cased, for messages.
fn display_name(source: &str) -> String {
    source
        .split(|c: char| c.is_whitespace())
        .next()
        .unwrap_or_default()
        .to_uppercase()
}

fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Removes a line continuation (the escape character as the last non-blank character, not
/// preceded by another escape character); `true` when the line ends the instruction.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let stripped = line.trim_end_matches([' ', '\t']);
    let Some(before) = stripped.strip_suffix(escape) else {
        return (line, true);
    };
    if before.is_empty() {
        return ("", false);
    }
    if before.ends_with(escape) {
        return (line, true);
    }
    (before, false)
}

/// BuildKit's directive parser: `# name=value` lines at the top, until the first other line.
#[derive(Default)]
struct Directives {
    done: bool,
    seen: Vec<String>,
}

impl Directives {
    fn parse_line(&mut self, line: &str) -> Result<Option<(String, String)>, String> {
        if self.done {
            return Ok(None);
        }
        let Some(directive) = line.strip_prefix('#').and_then(parse_directive) else {
            self.done = true;
            return Ok(None);
        };
        let (name, value) = directive;
        let name = name.to_ascii_lowercase();
        if !matches!(name.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(None);
        }
        if self.seen.contains(&name) {
            return Err(format!(
                "the {name} parser directive is given twice: it may appear only once"
            ));
        }
        self.seen.push(name.clone());
        Ok(Some((name, value.to_string())))
    }
}

/// `name = value` (BuildKit's `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` after the `#`).
fn parse_directive(text: &str) -> Option<(&str, &str)> {
    let is_space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\x0c' | '\r');
    let text = text.trim_start();
    let name_end = text
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(text.len(), |(i, _)| i);
    if name_end == 0 {
        return None;
    }
    let (name, rest) = text.split_at(name_end);
    let rest = rest.trim_start_matches(is_space).strip_prefix('=')?;
    let value = rest.trim_matches(is_space);
    if value.is_empty() {
        return None;
    }
    Some((name, value))
}

/// BuildKit's `[\t\v\f\r ]`: how `FROM`, `EXPOSE` and list forms are split.
fn is_blank(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

fn split_blanks(text: &str) -> Vec<String> {
    text.split(is_blank)
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// An instruction's name, flags and the rest of its line.
struct Header<'a> {
    /// As written.
    name: &'a str,
    /// Lower-cased.
    lower: String,
    /// `--name=value` words, quotes removed.
    flags: Vec<String>,
    /// The arguments after the flags, trimmed.
    rest: &'a str,
    escape: char,
}

impl<'a> Header<'a> {
    fn split(line: &'a str, escape: char) -> Result<Header<'a>, String> {
        let line = line.trim();
        let name_end = line.find(is_blank).unwrap_or(line.len());
        let name = &line[..name_end];
        let after = line[name_end..].trim_start_matches(is_blank);
        let (flags, rest) = extract_flags(after, escape);
        Ok(Header {
            name,
            lower: name.to_ascii_lowercase(),
            flags,
            rest: rest.trim(),
            escape,
        })
    }

    fn upper(&self) -> String {
        self.name.to_ascii_uppercase()
    }

    /// Whether the line may open here-documents: RUN, COPY, ADD (or ONBUILD of them), not in
    /// the JSON form.
    fn can_contain_heredoc(&self) -> Result<bool, String> {
        match self.lower.as_str() {
            "run" => Ok(maybe_json(self.rest, "RUN")?.is_none()),
            "copy" | "add" => Ok(maybe_json(self.rest, &self.upper())?.is_none()),
            "onbuild" => {
                let sub = Header::split(self.rest, self.escape)?;
                Ok(matches!(sub.lower.as_str(), "run" | "copy" | "add")
                    && sub.can_contain_heredoc()?)
            }
            _ => Ok(false),
        }
    }

    fn into_parsed(
        self,
        line: &str,
        heredocs: Vec<Heredoc>,
        escape: char,
    ) -> Result<Parsed, String> {
        if self.lower == "from" {
            return self.into_stage();
        }
        self.into_kind(line, heredocs, escape)
            .map(Parsed::Instruction)
    }

    fn into_stage(self) -> Result<Parsed, String> {
        let upper = self.upper();
        let rest = self.rest;
        let flags = parse_flags(&upper, &self.flags, &[("platform", FlagType::String)])?;
        let words = split_blanks(rest);
        let (from, name) = match words.as_slice() {
            [image] => (image.clone(), None),
            [image, as_, name] if as_.eq_ignore_ascii_case("as") => {
                let lower = name.to_lowercase();
                if !valid_stage_name(&lower) {
                    return Err(format!(
                        "'{name}' is not a valid stage name: a stage name starts with a letter and has only letters, digits, '-', '_' and '.'"
                    ));
                }
                (image.clone(), Some(lower))
            }
            [] => return Err("FROM needs an image: FROM <image> [AS <name>]".to_string()),
            _ => {
                return Err(format!(
                    "FROM takes an image and optionally AS <name>, not '{rest}': FROM <image> [AS <name>]"
                ))
            }
        };
        Ok(Parsed::Stage(Stage {
            line: 0,
            from,
            name,
            platform: flag_value(&flags, "platform"),
            instructions: Vec::new(),
        }))
    }

    fn into_kind(self, line: &str, heredocs: Vec<Heredoc>, escape: char) -> Result<Kind, String> {
        let upper = self.upper();
        let rest = self.rest;
        match self.lower.as_str() {
            "run" => {
                let flags = parse_flags(
                    &upper,
                    &self.flags,
                    &[
                        ("mount", FlagType::Strings),
                        ("network", FlagType::String),
                        ("security", FlagType::String),
                        ("device", FlagType::Strings),
                    ],
                )?;
                let command = match maybe_json(rest, "RUN")? {
                    Some(args) if args.is_empty() => None,
                    Some(args) => Some(Command::Exec(args)),
                    None if rest.is_empty() => None,
                    None => Some(Command::Shell(rest.to_string())),
                };
                let Some(command) = command else {
                    return Err("RUN needs a command".to_string());
                };
                Ok(Kind::Run {
                    command,
                    heredocs,
                    flags,
                })
            }
            "cmd" | "entrypoint" => {
                no_flags(&upper, &self.flags)?;
                let command = match maybe_json(rest, &upper)? {
                    Some(args) => Command::Exec(args),
                    None if rest.is_empty() => {
                        return Err(format!(
                            "{upper} needs a command (or {upper} [] to clear the parent image's)"
                        ))
                    }
                    None => Command::Shell(rest.to_string()),
                };
                Ok(if upper == "CMD" {
                    Kind::Cmd(command)
                } else {
                    Kind::Entrypoint(command)
                })
            }
            "shell" => {
                no_flags(&upper, &self.flags)?;
                match maybe_json(rest, "SHELL")? {
                    Some(args) if !args.is_empty() => Ok(Kind::Shell(args)),
                    _ => Err(
                        "SHELL needs a JSON array of strings, for example SHELL [\"/bin/bash\", \"-c\"]"
                            .to_string(),
                    ),
                }
            }
            "env" => {
                no_flags(&upper, &self.flags)?;
                Ok(Kind::Env(parse_name_values(rest, "ENV", escape)?))
            }
            "label" => {
                no_flags(&upper, &self.flags)?;
                Ok(Kind::Label(parse_name_values(rest, "LABEL", escape)?))
            }
            "arg" => {
                no_flags(&upper, &self.flags)?;
                let words = parse_words(rest, escape);
                if words.is_empty() {
                    return Err("ARG needs a name: ARG <name>[=<default>]".to_string());
                }
                let mut args = Vec::new();
                for word in words {
                    let decl = match word.split_once('=') {
                        Some(("", _)) => {
                            return Err(format!("ARG '{word}' has no name before the '='"))
                        }
                        Some((name, default)) => ArgDecl {
                            name: name.to_string(),
                            default: Some(default.to_string()),
                        },
                        None => ArgDecl {
                            name: word,
                            default: None,
                        },
                    };
                    args.push(decl);
                }
                Ok(Kind::Arg(args))
            }
            "workdir" | "user" | "stopsignal" | "maintainer" => {
                no_flags(&upper, &self.flags)?;
                if rest.is_empty() {
                    let what = match upper.as_str() {
                        "WORKDIR" => "a directory",
                        "USER" => "a user (name or uid, optionally :group)",
                        "STOPSIGNAL" => "a signal (for example SIGTERM)",
                        _ => "a name",
                    };
                    return Err(format!("{upper} needs {what}"));
                }
                let value = rest.to_string();
                Ok(match upper.as_str() {
                    "WORKDIR" => Kind::Workdir(value),
                    "USER" => Kind::User(value),
                    "STOPSIGNAL" => Kind::StopSignal(value),
                    _ => Kind::Maintainer(value),
                })
            }
            "expose" => {
                no_flags(&upper, &self.flags)?;
                let ports = split_blanks(rest);
                if ports.is_empty() {
                    return Err(
                        "EXPOSE needs at least one port, for example EXPOSE 80 443/udp".to_string(),
                    );
                }
                Ok(Kind::Expose(ports))
            }
            "volume" => {
                no_flags(&upper, &self.flags)?;
                let volumes = maybe_json(rest, "VOLUME")?.unwrap_or_else(|| split_blanks(rest));
                if volumes.is_empty() {
                    return Err("VOLUME needs at least one path".to_string());
                }
                let mut out = Vec::new();
                for volume in volumes {
                    let volume = volume.trim();
                    if volume.is_empty() {
                        return Err("VOLUME cannot be an empty path".to_string());
                    }
                    out.push(volume.to_string());
                }
                Ok(Kind::Volume(out))
            }
            "copy" | "add" => {
                let spec = parse_copy(&upper, &self.flags, rest, heredocs)?;
                Ok(if upper == "COPY" {
                    Kind::Copy(spec)
                } else {
                    Kind::Add(spec)
                })
            }
            "healthcheck" => parse_healthcheck(&self.flags, rest),
            "onbuild" => {
                no_flags(&upper, &self.flags)?;
                if rest.is_empty() {
                    return Err(
                        "ONBUILD needs an instruction, for example ONBUILD RUN make".to_string()
                    );
                }
                let sub = Header::split(rest, escape)?;
                match sub.upper().as_str() {
                    "ONBUILD" => {
                        return Err(
                            "ONBUILD ONBUILD is not allowed: ONBUILD triggers cannot be chained"
                                .to_string(),
                        )
                    }
                    "FROM" | "MAINTAINER" => {
                        return Err(format!(
                            "{} is not allowed as an ONBUILD trigger",
                            sub.upper()
                        ))
                    }
                    _ => {}
                }
                // The sub-instruction's JSON form is checked as BuildKit does.
                if matches!(sub.lower.as_str(), "run" | "cmd" | "entrypoint" | "shell") {
                    maybe_json(sub.rest, &sub.upper())?;
                }
                // The trigger as written: the line without `ONBUILD`, then the bodies.
                let trimmed = line.trim_start();
                let mut trigger = trimmed[self.name.len()..].trim_start().to_string();
                for heredoc in &heredocs {
                    trigger.push('\n');
                    trigger.push_str(&heredoc.content);
                    trigger.push_str(&heredoc.name);
                }
                Ok(Kind::Onbuild(trigger))
            }
            _ => Err(unknown_instruction(self.name)),
        }
    }
}

const INSTRUCTIONS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

fn unknown_instruction(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    let suggestion = INSTRUCTIONS
        .iter()
        .map(|known| (edit_distance(&upper, known), known))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d);
    match suggestion {
        Some((_, known)) => format!("unknown instruction '{name}' (did you mean {known}?)"),
        None => format!("unknown instruction '{name}'"),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            current[j + 1] = (previous[j] + cost)
                .min(previous[j + 1] + 1)
                .min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

/// BuildKit's `extractBuilderFlags`: the leading `--` words (quotes and escapes removed) and the
/// rest of the line.
fn extract_flags(line: &str, escape: char) -> (Vec<String>, &str) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut blank_ok = false;
    let mut chars = line.char_indices().peekable();
    while let Some((pos, ch)) = chars.next() {
        match phase {
            Phase::Spaces => {
                if ch.is_whitespace() {
                    continue;
                }
                if !line[pos..].starts_with("--") {
                    return (words, &line[pos..]);
                }
                phase = Phase::Word;
            }
            Phase::Word | Phase::Quote(_) => {}
        }
        match phase {
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (words, &line[pos..]);
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                    continue;
                }
                if ch == escape {
                    match chars.next() {
                        Some((_, next)) => word.push(next),
                        None => continue,
                    }
                    continue;
                }
                word.push(ch);
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                    continue;
                }
                if ch == escape {
                    match chars.next() {
                        Some((_, next)) => word.push(next),
                        None => phase = Phase::Word,
                    }
                    continue;
                }
                word.push(ch);
            }
            Phase::Spaces => {}
        }
    }
    if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    (words, "")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FlagType {
    Bool,
    String,
    /// May be repeated.
    Strings,
}

/// Checks the flags against what the instruction accepts; (name, value) in order, booleans as
/// `true`/`false`.
fn parse_flags(
    instruction: &str,
    flags: &[String],
    accepted: &[(&str, FlagType)],
) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for flag in flags {
        let body = flag.strip_prefix("--").unwrap_or(flag);
        let (name, value) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (body, None),
        };
        let Some(&(_, kind)) = accepted.iter().find(|(n, _)| *n == name) else {
            return Err(if accepted.is_empty() {
                format!("{instruction} takes no flags, but has --{name}")
            } else {
                let list: Vec<String> = accepted.iter().map(|(n, _)| format!("--{n}")).collect();
                format!(
                    "unknown flag --{name} for {instruction} (it takes {})",
                    list.join(", ")
                )
            });
        };
        if kind != FlagType::Strings && out.iter().any(|(n, _)| n == name) {
            return Err(format!("{instruction} has --{name} twice"));
        }
        let value = match (kind, value) {
            (FlagType::Bool, None) => "true".to_string(),
            (FlagType::Bool, Some(v)) if v.eq_ignore_ascii_case("true") => "true".to_string(),
            (FlagType::Bool, Some(v)) if v.eq_ignore_ascii_case("false") => "false".to_string(),
            (FlagType::Bool, Some("")) => {
                return Err(format!(
                    "{instruction} --{name}= needs a value (true or false)"
                ))
            }
            (FlagType::Bool, Some(v)) => {
                return Err(format!(
                    "{instruction} --{name} is true or false, not '{v}'"
                ))
            }
            (_, Some(v)) => v.to_string(),
            (_, None) => {
                return Err(format!(
                    "{instruction} --{name} needs a value: --{name}=<value>"
                ))
            }
        };
        out.push((name.to_string(), value));
    }
    Ok(out)
}

fn no_flags(instruction: &str, flags: &[String]) -> Result<(), String> {
    parse_flags(instruction, flags, &[]).map(|_| ())
}

fn flag_value(flags: &[(String, String)], name: &str) -> Option<String> {
    flags
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// BuildKit's `parseJSON`: `Some(args)` for a JSON array of strings, `None` when the text is not
/// a JSON array (the shell form), an error for a JSON array holding anything else.
fn maybe_json(text: &str, instruction: &str) -> Result<Option<Vec<String>>, String> {
    let text = text.trim_start();
    if !text.starts_with('[') {
        return Ok(None);
    }
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(text)
    else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for item in items {
        match item {
            serde_json::Value::String(s) => out.push(s),
            other => {
                return Err(format!(
                    "{instruction}: a JSON array must hold only strings, but has {other}"
                ))
            }
        }
    }
    Ok(Some(out))
}

/// BuildKit's `parseWords`: words split on whitespace outside quotes, quotes and escapes kept.
fn parse_words(text: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut blank_ok = false;
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        if phase == Phase::Spaces {
            if ch.is_whitespace() {
                continue;
            }
            phase = Phase::Word;
        }
        match phase {
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    // The escape character and the next one are kept; at the end it is dropped.
                    let Some(next) = chars.next() else { continue };
                    word.push(ch);
                    word.push(next);
                    continue;
                }
                word.push(ch);
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                }
                if ch == escape && quote != '\'' {
                    let Some(next) = chars.next() else {
                        phase = Phase::Word;
                        continue;
                    };
                    word.push(ch);
                    word.push(next);
                    continue;
                }
                word.push(ch);
            }
            Phase::Spaces => {}
        }
    }
    if phase != Phase::Spaces && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// `ENV`/`LABEL`: `a=b c=d` pairs, or the legacy `name value...`.
fn parse_name_values(
    rest: &str,
    instruction: &str,
    escape: char,
) -> Result<Vec<(String, String)>, String> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Err(format!("{instruction} needs at least one <name>=<value>"));
    };
    if !first.contains('=') {
        // Legacy form: the first word is the name, the rest of the line the value.
        let name_end = rest.find(is_blank);
        let Some(name_end) = name_end else {
            return Err(format!(
                "{instruction} {rest} has no value: write {instruction} {rest}=<value>"
            ));
        };
        let value = rest[name_end..].trim_start_matches(is_blank);
        return Ok(vec![(rest[..name_end].to_string(), value.to_string())]);
    }
    let mut pairs = Vec::new();
    for word in words {
        match word.split_once('=') {
            Some(("", _)) => {
                return Err(format!(
                    "{instruction} '{word}' has no name before the '='"
                ))
            }
            Some((name, value)) => pairs.push((name.to_string(), value.to_string())),
            None => {
                return Err(format!(
                    "{instruction} '{word}' has no '=': write <name>=<value> pairs (quote values with spaces)"
                ))
            }
        }
    }
    Ok(pairs)
}

fn parse_copy(
    instruction: &str,
    flags: &[String],
    rest: &str,
    heredocs: Vec<Heredoc>,
) -> Result<CopySpec, String> {
    let accepted: &[(&str, FlagType)] = if instruction == "COPY" {
        &[
            ("from", FlagType::String),
            ("chown", FlagType::String),
            ("chmod", FlagType::String),
            ("link", FlagType::Bool),
            ("parents", FlagType::Bool),
            ("exclude", FlagType::Strings),
        ]
    } else {
        &[
            ("chown", FlagType::String),
            ("chmod", FlagType::String),
            ("link", FlagType::Bool),
            ("checksum", FlagType::String),
            ("keep-git-dir", FlagType::Bool),
            ("unpack", FlagType::Bool),
            ("exclude", FlagType::Strings),
        ]
    };
    let flags = parse_flags(instruction, flags, accepted)?;
    let json = maybe_json(rest, instruction)?;
    let is_json = json.is_some();
    let mut args = json.unwrap_or_else(|| split_blanks(rest));
    if args.len() < 2 {
        return Err(format!(
            "{instruction} needs a source and a destination: {instruction} <source>... <destination>"
        ));
    }
    let destination = args.pop().unwrap_or_default();
    if !is_json && heredoc_word(&destination).ok().flatten().is_some() {
        return Err(format!(
            "{instruction} cannot take a here-document as its destination"
        ));
    }
    let mut sources = Vec::new();
    let mut files = Vec::new();
    for arg in args {
        let named = if is_json {
            None
        } else {
            heredoc_word(&arg)
                .ok()
                .flatten()
                .and_then(|word| heredocs.iter().find(|h| h.name == word.name))
        };
        match named {
            Some(heredoc) => files.push(heredoc.clone()),
            None => sources.push(arg),
        }
    }
    let mut spec = CopySpec {
        from: None,
        chown: None,
        chmod: None,
        link: false,
        checksum: None,
        other_flags: Vec::new(),
        sources,
        destination,
        heredocs: files,
    };
    for (name, value) in flags {
        match name.as_str() {
            "from" => spec.from = Some(value),
            "chown" => spec.chown = Some(value),
            "chmod" => spec.chmod = Some(value),
            "link" => spec.link = value == "true",
            "checksum" => spec.checksum = Some(value),
            _ => spec.other_flags.push((name, value)),
        }
    }
    Ok(spec)
}

fn parse_healthcheck(flags: &[String], rest: &str) -> Result<Kind, String> {
    let type_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let typ = &rest[..type_end];
    let args = rest[type_end..].trim_start();
    match typ.to_ascii_uppercase().as_str() {
        "" => Err("HEALTHCHECK needs NONE or CMD <command>".to_string()),
        "NONE" => {
            if !args.is_empty() {
                return Err("HEALTHCHECK NONE takes no arguments".to_string());
            }
            Ok(Kind::Healthcheck(None))
        }
        "CMD" => {
            let flags = parse_flags(
                "HEALTHCHECK",
                flags,
                &[
                    ("interval", FlagType::String),
                    ("timeout", FlagType::String),
                    ("start-period", FlagType::String),
                    ("start-interval", FlagType::String),
                    ("retries", FlagType::String),
                ],
            )?;
            let test = match maybe_json(args, "HEALTHCHECK")? {
                Some(argv) if !argv.is_empty() => {
                    let mut test = vec!["CMD".to_string()];
                    test.extend(argv);
                    test
                }
                Some(_) => return Err("HEALTHCHECK CMD needs a command".to_string()),
                None if args.is_empty() => {
                    return Err("HEALTHCHECK CMD needs a command".to_string())
                }
                None => vec!["CMD-SHELL".to_string(), args.to_string()],
            };
            let mut health = Healthcheck {
                test,
                interval: None,
                timeout: None,
                start_period: None,
                start_interval: None,
                retries: None,
            };
            for (name, value) in flags {
                if name == "retries" {
                    let retries: i64 = value.parse().map_err(|_| {
                        format!("HEALTHCHECK --retries is a whole number, not '{value}'")
                    })?;
                    if retries < 0 || retries > i64::from(i32::MAX) {
                        return Err(format!(
                            "HEALTHCHECK --retries cannot be {}",
                            if retries < 0 {
                                "negative"
                            } else {
                                "that large"
                            }
                        ));
                    }
                    health.retries = Some(retries as u64);
                    continue;
                }
                let ns = parse_duration(&value)
                    .map_err(|e| format!("HEALTHCHECK --{name}={value}: {e}"))?;
                if ns != 0 && ns < 1_000_000 {
                    return Err(format!(
                        "HEALTHCHECK --{name}={value} is shorter than the minimum of 1ms"
                    ));
                }
                let ns = ns as u64;
                match name.as_str() {
                    "interval" => health.interval = Some(ns),
                    "timeout" => health.timeout = Some(ns),
                    "start-period" => health.start_period = Some(ns),
                    _ => health.start_interval = Some(ns),
                }
            }
            Ok(Kind::Healthcheck(Some(health)))
        }
        _ => Err(format!(
            "HEALTHCHECK takes NONE or CMD <command>, not '{typ}'"
        )),
    }
}

/// Go's `time.ParseDuration`, in nanoseconds (negative durations included: the caller refuses
/// them): `300ms`, `1.5h`, `1m30s`, `0`.
pub(crate) fn parse_duration(text: &str) -> Result<i128, String> {
    let invalid = || format!("'{text}' is not a duration (write for example 30s, 1m30s or 500ms)");
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let int_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int_part, after) = rest.split_at(int_end);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(after) => {
                let end = after
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(after.len());
                after.split_at(end)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_end = after
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(invalid()),
            _ => return Err(invalid()),
        };
        let int: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut value = int.checked_mul(scale).ok_or_else(invalid)?;
        let mut unit_scale = scale;
        for digit in frac_part.bytes() {
            unit_scale /= 10;
            value += i128::from(digit - b'0') * unit_scale;
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
        if total > i128::from(i64::MAX) {
            return Err(invalid());
        }
        rest = after;
    }
    Ok(if negative { -total } else { total })
}

/// A here-document opened on an instruction's line.
struct HeredocWord {
    name: String,
    expand: bool,
    chomp: bool,
}

/// BuildKit's `ParseHeredoc`: whether one word is `[n]<<[-]NAME`, and its delimiter.
fn heredoc_word(word: &str) -> Result<Option<HeredocWord>, String> {
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    let Some(after) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, after) = match after.strip_prefix('-') {
        Some(after) => (true, after),
        None => (false, after),
    };
    let rest = after.trim_start_matches([' ', '\t', '\n', '\x0c', '\r']);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let words = expand::heredoc_words(rest, false)?;
    let [name] = words.as_slice() else {
        return Ok(None);
    };
    let raw = expand::heredoc_words(rest, true)?;
    let [raw] = raw.as_slice() else {
        return Err(format!("cannot read the here-document delimiter {rest}"));
    };
    let quotes = |s: &str| s.chars().filter(|c| matches!(c, '\'' | '"')).count();
    Ok(Some(HeredocWord {
        name: name.clone(),
        expand: quotes(name) == quotes(raw),
        chomp,
    }))
}

/// Finds the here-documents opened on `line` and reads their bodies from `lines[*next..]`.
fn read_heredocs(
    line: &str,
    lines: &[&str],
    next: &mut usize,
    line_no: usize,
) -> Result<Vec<Heredoc>, Error> {
    let mut words = Vec::new();
    for word in expand::raw_words(line) {
        if let Some(heredoc) = heredoc_word(&word).map_err(|m| Error::new(line_no, m))? {
            words.push(heredoc);
        }
    }
    let mut heredocs = Vec::new();
    for word in words {
        let mut content = String::new();
        let mut terminated = false;
        while *next < lines.len() {
            let body_line = lines[*next];
            *next += 1;
            let mut candidate = trim_newline(body_line);
            if word.chomp {
                candidate = candidate.trim_start_matches('\t');
            }
            if candidate == word.name {
                terminated = true;
                break;
            }
            if word.chomp {
                content.push_str(body_line.trim_start_matches('\t'));
            } else {
                content.push_str(body_line);
            }
        }
        if !terminated {
            return Err(Error::new(
                line_no,
                format!(
                    "the here-document <<{} is not terminated: end it with a line holding only {}",
                    word.name, word.name
                ),
            ));
        }
        if !content.is_empty() && !content.ends_with('\n') {
            content.push('\n');
        }
        heredocs.push(Heredoc {
            name: word.name,
            content,
            expand: word.expand,
        });
    }
    Ok(heredocs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), 30_000_000_000);
        assert_eq!(parse_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration("500ms").unwrap(), 500_000_000);
        assert_eq!(parse_duration("1.5h").unwrap(), 5_400_000_000_000);
        assert_eq!(parse_duration(".5s").unwrap(), 500_000_000);
        assert_eq!(parse_duration("0").unwrap(), 0);
        assert_eq!(parse_duration("-1s").unwrap(), -1_000_000_000);
        assert_eq!(parse_duration("10us").unwrap(), 10_000);
        for bad in ["", "5", "s", "1x", "1.s5", "--1s", "9999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn words_as_buildkit_parse_words() {
        // BuildKit's TestParseWords.
        let cases: &[(&str, &[&str])] = &[
            ("foo", &["foo"]),
            ("foo bar", &["foo", "bar"]),
            ("foo\\ bar", &["foo\\ bar"]),
            ("foo=bar", &["foo=bar"]),
            ("foo bar 'abc xyz'", &["foo", "bar", "'abc xyz'"]),
            ("foo bar \"abc xyz\"", &["foo", "bar", "\"abc xyz\""]),
            ("àöû", &["àöû"]),
            ("föo bàr \"âbc xÿz\"", &["föo", "bàr", "\"âbc xÿz\""]),
            ("a=\"\"", &["a=\"\""]),
            ("trailing\\", &["trailing"]),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_words(input, '\\'), *expected, "{input}");
        }
    }

    #[test]
    fn heredoc_words() {
        // BuildKit's TestParseHeredocHelpers.
        for valid in [
            "<<EOF",
            "<<'EOF'",
            "<<\"EOF\"",
            "<<-EOF",
            "<<-'EOF'",
            "<<-\"EOF\"",
            "<<EO\"F\"",
            "<< EOF",
            "<<- EOF",
        ] {
            let word = heredoc_word(valid).unwrap().unwrap();
            assert_eq!(word.name, "EOF", "{valid}");
        }
        for invalid in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
            assert!(heredoc_word(invalid).is_err(), "{invalid}");
        }
        for not in ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh"] {
            assert!(heredoc_word(not).unwrap().is_none(), "{not}");
        }
        let word = heredoc_word("3<<-'E'O\\'F").unwrap().unwrap();
        assert_eq!(
            (word.name.as_str(), word.expand, word.chomp),
            ("EO'F", false, true)
        );
    }

    #[test]
    fn flags_extraction() {
        let (flags, rest) = extract_flags(
            "--mount=type=cache,target=\"/a b\" --network=none echo hi",
            '\\',
        );
        assert_eq!(
            flags,
            vec!["--mount=type=cache,target=/a b", "--network=none"]
        );
        assert_eq!(rest, "echo hi");
        let (flags, rest) = extract_flags("--link -- --not-a-flag", '\\');
        assert_eq!(flags, vec!["--link"]);
        assert_eq!(rest.trim(), "--not-a-flag");
        let (flags, rest) = extract_flags("--link", '\\');
        assert_eq!((flags, rest), (vec!["--link".to_string()], ""));
        let (flags, rest) = extract_flags("-x y", '\\');
        assert!(flags.is_empty());
        assert_eq!(rest, "-x y");
    }

    #[test]
    fn continuation() {
        assert_eq!(trim_continuation("a \\", '\\'), ("a ", false));
        assert_eq!(trim_continuation("a \\  \t", '\\'), ("a ", false));
        assert_eq!(trim_continuation("\\", '\\'), ("", false));
        assert_eq!(trim_continuation("a \\\\", '\\'), ("a \\\\", true));
        assert_eq!(trim_continuation("a `", '`'), ("a ", false));
        assert_eq!(trim_continuation("a \\", '`'), ("a \\", true));
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            unknown_instruction("RUNN"),
            "unknown instruction 'RUNN' (did you mean RUN?)"
        );
        assert_eq!(
            unknown_instruction("frobnicate"),
            "unknown instruction 'frobnicate'"
        );
    }
}
