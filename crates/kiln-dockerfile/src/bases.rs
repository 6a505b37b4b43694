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
