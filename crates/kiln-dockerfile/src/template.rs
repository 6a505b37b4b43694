//! Image Builder's Dockerfile template: a Dockerfile with three variables in triple braces.
//!
//! - `{{{ imagebuilder:parentImage }}}` is replaced by the recipe's parent image wherever it
//!   occurs (typically `FROM {{{ imagebuilder:parentImage }}}`).
//! - `{{{ imagebuilder:environments }}}` and `{{{ imagebuilder:components }}}` each stand on a
//!   line of their own, between instructions, and become an instruction of
//!   [`Kind::Environments`] (where Image Builder prepares the component environment) or
//!   [`Kind::Components`] (where the recipe's components run) in the stage where they are,
//!   keeping their line numbers. Each may appear once. On a comment line they are left alone
//!   (the comment is dropped); anywhere else (in an instruction, in a line continuation, in a
//!   here-document body) they are an error, as is any other `{{{ imagebuilder:... }}}` name.
//!   Triple braces around anything not starting with `imagebuilder:` are left as they are.
//! - Spacing inside the braces does not matter: `{{{imagebuilder:parentImage}}}` works.
//!
//! When the template has no components placeholder, Kiln appends a [`Kind::Components`]
//! instruction at the end of the last stage (with the template's last line number): that is
//! Kiln's documented choice for running a recipe's components when the template does not say
//! where.
//!
//! The result is a parsed [`Dockerfile`]; [`crate::validate::validate`] is a separate step.

use crate::parse::parse_with;
use crate::{Dockerfile, Error, Instruction, Kind};

/// The template variable replaced by the parent image.
pub const PARENT_IMAGE: &str = "imagebuilder:parentImage";
/// The template variable where Image Builder sets up the components' environment.
pub const ENVIRONMENTS: &str = "imagebuilder:environments";
/// The template variable where the recipe's components run.
pub const COMPONENTS: &str = "imagebuilder:components";

/// Replaces the template variables and parses the result (see the module documentation).
pub fn expand_template(template: &str, parent_image: &str) -> Result<Dockerfile, Error> {
    let mut text = String::with_capacity(template.len() + parent_image.len());
    // (line, kind) of every placeholder line, as found in the text.
    let mut placeholders: Vec<(usize, &'static str)> = Vec::new();
    for (index, line) in template.split_inclusive('\n').enumerate() {
        let line_no = index + 1;
        let comment = line.trim_start().starts_with('#');
        let mut rest = line;
        while let Some(start) = rest.find("{{{") {
            let after_open = &rest[start + 3..];
            let Some(end) = after_open.find("}}}") else {
                break;
            };
            let name = after_open[..end].trim();
            let whole = &rest[start..start + 3 + end + 3];
            text.push_str(&rest[..start]);
            rest = &after_open[end + 3..];
            if name == PARENT_IMAGE {
                if parent_image.contains(['\n', '\r']) {
                    return Err(Error::new(
                        line_no,
                        "the parent image contains a line break",
                    ));
                }
                text.push_str(parent_image);
                continue;
            }
            text.push_str(whole);
            let variable = match name {
                ENVIRONMENTS => ENVIRONMENTS,
                COMPONENTS => COMPONENTS,
                _ if name.to_ascii_lowercase().starts_with("imagebuilder:") => {
                    return Err(Error::new(
                        line_no,
                        format!(
                            "unknown template variable {whole}: Dockerfile templates know {{{{{{ {PARENT_IMAGE} }}}}}}, {{{{{{ {ENVIRONMENTS} }}}}}} and {{{{{{ {COMPONENTS} }}}}}}"
                        ),
                    ))
                }
                _ => continue,
            };
            if comment {
                continue;
            }
            if line.trim() != whole {
                return Err(Error::new(
                    line_no,
                    format!("{{{{{{ {variable} }}}}}} must be on a line of its own"),
                ));
            }
            if let Some((first, _)) = placeholders.iter().find(|(_, v)| *v == variable) {
                return Err(Error::new(
                    line_no,
                    format!(
                        "{{{{{{ {variable} }}}}}} appears twice (lines {first} and {line_no}): it may appear once"
                    ),
                ));
            }
            placeholders.push((line_no, variable));
        }
        text.push_str(rest);
    }

    let recognise = |source: &str| -> Option<Kind> {
        let inner = source.strip_prefix("{{{")?.strip_suffix("}}}")?.trim();
        match inner {
            ENVIRONMENTS => Some(Kind::Environments),
            COMPONENTS => Some(Kind::Components),
            _ => None,
        }
    };
    let mut dockerfile = parse_with(&text, &recognise)?;

    // A placeholder line the parser did not see as an instruction was swallowed by a line
    // continuation or a here-document.
    for (line, variable) in &placeholders {
        let found = dockerfile.stages.iter().any(|stage| {
            stage
                .instructions
                .iter()
                .any(|i| i.line == *line && matches!(i.kind, Kind::Environments | Kind::Components))
        });
        if !found {
            return Err(Error::new(
                *line,
                format!(
                    "{{{{{{ {variable} }}}}}} is inside another instruction (a line continuation or a here-document): put it on a line of its own between instructions"
                ),
            ));
        }
    }

    if !placeholders.iter().any(|(_, v)| *v == COMPONENTS) {
        let last_line = template.lines().count().max(1);
        if let Some(stage) = dockerfile.stages.last_mut() {
            stage.instructions.push(Instruction {
                line: last_line,
                source: format!("{{{{{{ {COMPONENTS} }}}}}}"),
                kind: Kind::Components,
            });
        }
    }
    Ok(dockerfile)
}

/// Whether the template says where the components run (a `{{{ imagebuilder:components }}}`
/// line); without it [`expand_template`] runs them at the end of the last stage.
pub fn uses_components(template: &str) -> bool {
    has_placeholder_line(template, COMPONENTS)
}

/// Whether the template has a `{{{ imagebuilder:environments }}}` line.
pub fn uses_environments(template: &str) -> bool {
    has_placeholder_line(template, ENVIRONMENTS)
}

/// Whether the template uses `{{{ imagebuilder:parentImage }}}` anywhere.
pub fn uses_parent_image(template: &str) -> bool {
    uses_variable(template, PARENT_IMAGE)
}

/// Whether `template` uses the variable `{{{ name }}}` anywhere (spaces inside the braces are
/// optional).
pub fn uses_variable(template: &str, name: &str) -> bool {
    let mut rest = template;
    while let Some(start) = rest.find("{{{") {
        let after_open = &rest[start + 3..];
        let Some(end) = after_open.find("}}}") else {
            return false;
        };
        if after_open[..end].trim() == name {
            return true;
        }
        rest = after_open;
    }
    false
}

/// The documented template variables: `parentImage` always, `environments` when the recipe has
/// components. The message is for the member the template came from.
pub fn check_variables(template: &str, has_components: bool) -> Result<(), String> {
    if !uses_variable(template, PARENT_IMAGE) {
        return Err(format!(
            "the template must use {{{{{{ {PARENT_IMAGE} }}}}}} (for example 'FROM {{{{{{ {PARENT_IMAGE} }}}}}}')"
        ));
    }
    if has_components && !uses_variable(template, ENVIRONMENTS) {
        return Err(format!(
            "a recipe with components needs {{{{{{ {ENVIRONMENTS} }}}}}} in its template, before {{{{{{ {COMPONENTS} }}}}}}"
        ));
    }
    Ok(())
}

fn has_placeholder_line(template: &str, variable: &str) -> bool {
    template.lines().any(|line| {
        line.trim()
            .strip_prefix("{{{")
            .and_then(|l| l.strip_suffix("}}}"))
            .is_some_and(|inner| inner.trim() == variable)
    })
}
