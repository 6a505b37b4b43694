//! What a container recipe's Dockerfile cannot do in Kiln, and references that cannot resolve,
//! refused before anything runs. [`validate`] returns the first problem, with its line.
//!
//! - No build context. A container recipe has only its Dockerfile: `COPY` without `--from`, and
//!   `ADD` of anything but an `http://` or `https://` URL, would read local files that do not
//!   exist. Here-documents (`COPY <<EOF /dest`) are fine: their content is in the Dockerfile.
//!   An `ADD` source holding a variable (`ADD $URL /x`) is not judged here, since only its
//!   expansion tells: the builder checks it again once expanded.
//! - `COPY --from=<stage>` must name a stage before the current one, by name (compared
//!   lower-cased, as BuildKit does) or by index (counted from 0). A name that is no stage is an
//!   image (`COPY --from=nginx:1.27 ...`): allowed here, the builder pulls it. BuildKit does not
//!   expand variables in `--from`, and neither does Kiln: a `$` there is an error.
//! - `FROM <name>` of a stage defined later is an error (a stage builds on earlier stages
//!   only); `FROM x AS x` names the image `x`, as in BuildKit. Two stages with the same name are
//!   an error.
//! - Not supported by Kiln yet: `RUN --mount`, `--network`, `--security`, `--device`, and the
//!   `COPY`/`ADD` flags of [`crate::CopySpec::other_flags`] (`--parents`, `--exclude`,
//!   `--keep-git-dir`, `--unpack`).
//!
//! `ONBUILD` triggers are not checked: they run only in builds that use the image as their
//! parent.

use crate::{CopySpec, Dockerfile, Error, Kind};

const NO_CONTEXT: &str = "needs a build context, which container recipes do not have: copy from an earlier stage with COPY --from=<stage>, create the file in a RUN, or ADD it from an https:// URL";

/// Checks a parsed Dockerfile (see the module documentation).
pub fn validate(d: &Dockerfile) -> Result<(), Error> {
    for (i, stage) in d.stages.iter().enumerate() {
        if let Some(name) = &stage.name {
            if let Some(first) = d.stages[..i]
                .iter()
                .find(|s| s.name.as_deref() == Some(name.as_str()))
            {
                return Err(Error::new(
                    stage.line,
                    format!(
                        "the stage name '{name}' is used twice (lines {} and {}): stage names must differ",
                        first.line, stage.line
                    ),
                ));
            }
        }
        let base = stage.from.to_lowercase();
        if let Some(later) = d.stages[i + 1..]
            .iter()
            .find(|s| s.name.as_deref() == Some(base.as_str()))
        {
            return Err(Error::new(
                stage.line,
                format!(
                    "FROM {}: the stage '{base}' is defined later (line {}); a stage can only build on stages before it",
                    stage.from, later.line
                ),
            ));
        }
    }

    for (index, stage) in d.stages.iter().enumerate() {
        for instruction in &stage.instructions {
            let line = instruction.line;
            match &instruction.kind {
                Kind::Run { flags, .. } => {
                    if let Some((name, _)) = flags.first() {
                        return Err(Error::new(
                            line,
                            format!("RUN --{name} is not supported by Kiln yet"),
                        ));
                    }
                }
                Kind::Copy(spec) => {
                    check_other_flags("COPY", spec, line)?;
                    match &spec.from {
                        Some(from) => check_copy_from(d, index, from, line)?,
                        None => {
                            if !spec.sources.is_empty() {
                                return Err(Error::new(line, format!("COPY {NO_CONTEXT}")));
                            }
                        }
                    }
                }
                Kind::Add(spec) => {
                    check_other_flags("ADD", spec, line)?;
                    if let Some(source) =
                        spec.sources.iter().find(|s| !is_url(s) && !s.contains('$'))
                    {
                        return Err(Error::new(
                            line,
                            format!("ADD of a local file ({source}) {NO_CONTEXT}"),
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn check_other_flags(instruction: &str, spec: &CopySpec, line: usize) -> Result<(), Error> {
    match spec.other_flags.first() {
        Some((name, _)) => Err(Error::new(
            line,
            format!("{instruction} --{name} is not supported by Kiln yet"),
        )),
        None => Ok(()),
    }
}

fn is_url(source: &str) -> bool {
    let lower = source.to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

fn check_copy_from(d: &Dockerfile, current: usize, from: &str, line: usize) -> Result<(), Error> {
    let nothing = |_: &str| None;
    if crate::expand::expand(from, d.escape, &nothing).as_deref() != Ok(from) {
        return Err(Error::new(
            line,
            format!(
                "COPY --from={from}: variables are not expanded in --from (as in BuildKit); define a stage FROM ${{VAR}} AS <name> and copy from that"
            ),
        ));
    }
    if let Some(index) = parse_index(from) {
        if index < 0 || index >= d.stages.len() as i64 {
            return Err(Error::new(
                line,
                format!(
                    "COPY --from={from}: there is no stage {index} (stages are counted from 0, and this Dockerfile has {})",
                    d.stages.len()
                ),
            ));
        }
        if index as usize >= current {
            return Err(Error::new(
                line,
                format!(
                    "COPY --from={from} refers to {} stage: a stage can only copy from stages before it",
                    if index as usize == current { "the current" } else { "a later" }
                ),
            ));
        }
        return Ok(());
    }
    let name = from.to_lowercase();
    if let Some(position) = d
        .stages
        .iter()
        .position(|s| s.name.as_deref() == Some(name.as_str()))
    {
        if position >= current {
            return Err(Error::new(
                line,
                format!(
                    "COPY --from={from} refers to {}: a stage can only copy from stages before it",
                    if position == current {
                        "the current stage".to_string()
                    } else {
                        format!("a later stage (line {})", d.stages[position].line)
                    }
                ),
            ));
        }
    }
    Ok(())
}

/// Go's `strconv.Atoi`: an optional sign and decimal digits.
fn parse_index(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}
