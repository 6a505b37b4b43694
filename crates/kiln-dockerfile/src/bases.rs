//! What each stage is built on: the recipe's parent image, an earlier stage, or nothing
//! (`scratch`). Kiln builds from nothing else (a `FROM` naming another image would need that
//! image pulled and checked as a parent image is), and says so at CreateContainerRecipe.

use crate::{expand, Dockerfile, Error};
use std::collections::BTreeMap;

/// The base of one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// The recipe's parent image (`FROM {{{ imagebuilder:parentImage }}}`).
    Parent,
    /// An earlier stage, by index.
    Stage(usize),
    Scratch,
}

/// The values of the `ARG`s before the first `FROM`, each default expanded with the ones
/// before it (nothing passes build arguments to a recipe's build: the defaults are the values).
pub fn global_args(dockerfile: &Dockerfile) -> Result<BTreeMap<String, String>, Error> {
    let mut values = BTreeMap::new();
    for arg in &dockerfile.global_args {
        let value = match &arg.default {
            Some(default) => {
                expand::expand(default, dockerfile.escape, &|n| values.get(n).cloned())
                    .map_err(|e| Error::new(1, format!("ARG {}: {e}", arg.name)))?
            }
            None => String::new(),
        };
        values.insert(arg.name.clone(), value);
    }
    Ok(values)
}

/// The base of every stage, in order. `parent_reference` is what the template's
/// `{{{ imagebuilder:parentImage }}}` was replaced with.
pub fn bases(dockerfile: &Dockerfile, parent_reference: &str) -> Result<Vec<Base>, Error> {
    let args = global_args(dockerfile)?;
    let mut bases = Vec::with_capacity(dockerfile.stages.len());
    for (index, stage) in dockerfile.stages.iter().enumerate() {
        let from = expand::expand(&stage.from, dockerfile.escape, &|n| args.get(n).cloned())
            .map_err(|e| Error::new(stage.line, format!("FROM {}: {e}", stage.from)))?;
        check_platform(stage, dockerfile.escape, &args)?;
        let lower = from.to_ascii_lowercase();
        let earlier = dockerfile.stages[..index]
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()));
        let base = if let Some(i) = earlier {
            Base::Stage(i)
        } else if from == parent_reference {
            Base::Parent
        } else if lower == "scratch" {
            Base::Scratch
        } else {
            return Err(Error::new(
                stage.line,
                format!(
                    "FROM {from}: Kiln builds a stage from the recipe's parent image \
                     ({{{{{{ imagebuilder:parentImage }}}}}}), an earlier stage (FROM <name> of an \
                     earlier FROM ... AS <name>) or scratch; make {from} the recipe's parentImage, \
                     or build it in an earlier stage"
                ),
            ));
        };
        bases.push(base);
    }
    Ok(bases)
}

/// The platform every stage builds for: Kiln's instances run the host's x86-64 Linux.
pub const PLATFORM: &str = "linux/amd64";

/// `FROM --platform=...` may only name [`PLATFORM`] (also through BuildKit's automatic
/// `BUILDPLATFORM` / `TARGETPLATFORM`), since that is what the stage is built for.
fn check_platform(
    stage: &crate::Stage,
    escape: char,
    args: &BTreeMap<String, String>,
) -> Result<(), Error> {
    let Some(platform) = &stage.platform else {
        return Ok(());
    };
    let lookup = |name: &str| match name {
        "BUILDPLATFORM" | "TARGETPLATFORM" => Some(PLATFORM.to_string()),
        _ => args.get(name).cloned(),
    };
    let expanded = expand::expand(platform, escape, &lookup)
        .map_err(|e| Error::new(stage.line, format!("FROM --platform={platform}: {e}")))?;
    if matches!(
        expanded.as_str(),
        "linux/amd64" | "linux/x86_64" | "linux/amd64/v1"
    ) {
        return Ok(());
    }
    Err(Error::new(
        stage.line,
        format!(
            "FROM --platform={expanded}: Kiln builds {PLATFORM} images only (its build instances run on this x86-64 host)"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bases_of(text: &str) -> Result<Vec<Base>, Error> {
        bases(&crate::parse(text).unwrap(), "parent:1")
    }

    #[test]
    fn stages_build_on_the_parent_an_earlier_stage_or_scratch() {
        let text = "ARG P=parent:1\nFROM $P AS a\nFROM a\nFROM scratch\nFROM --platform=$BUILDPLATFORM A\n";
        assert_eq!(
            bases_of(text).unwrap(),
            [Base::Parent, Base::Stage(0), Base::Scratch, Base::Stage(0)]
        );
        let e = bases_of("FROM parent:1\nFROM nginx\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("FROM nginx"), "{e}");
        let e = bases_of("FROM --platform=linux/arm64 parent:1\n").unwrap_err();
        assert!(
            e.message.contains("linux/arm64") && e.message.contains("linux/amd64"),
            "{e}"
        );
        assert!(bases_of("FROM --platform=linux/amd64 parent:1\n").is_ok());
    }
}
