//! Files made from the command's clap definitions for the package (`cargo xtask dist` and
//! `cargo xtask deb` run the hidden `kiln dist-files DIR`): the commented configuration file,
//! the man pages and the shell completions. Made from the definitions, they cannot drift from
//! the flags; `packaging/kiln.toml` is checked in, and a test fails when it is stale.

use anyhow::{Context, Result};
use clap::{Arg, ArgAction};
use std::any::TypeId;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The values the systemd unit runs with (`packaging/kiln.service`): set, not commented out.
const UNIT_VALUES: &[(&str, &str)] = &[
    ("data-dir", "\"/var/lib/kiln\""),
    ("listen", "\"127.0.0.1:7070\""),
];

#[derive(clap::Args)]
pub struct DistArgs {
    /// Directory to write kiln.toml, man/ and completions/ into.
    dir: PathBuf,
}

pub fn main(args: DistArgs) -> Result<()> {
    write(&args.dir)
}

fn write(dir: &Path) -> Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    for d in [dir, &man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let template = dir.join("kiln.toml");
    std::fs::write(&template, config_template())
        .with_context(|| format!("writing {}", template.display()))?;
    let cmd = crate::config::command();
    clap_mangen::generate_to(cmd.clone(), &man)
        .with_context(|| format!("writing man pages into {}", man.display()))?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "kiln", &completions)
            .with_context(|| format!("writing {shell} completions"))?;
    }
    println!("wrote {}", dir.display());
    Ok(())
}

/// `/etc/kiln/kiln.toml`: every flag of `kiln serve`, commented out with its help, env var and
/// default, except the unit's own values.
pub fn config_template() -> String {
    let mut out = String::from(
        "# Kiln's configuration: `kiln serve --config /etc/kiln/kiln.toml` (the systemd unit).\n\
         #\n\
         # Each key is a long flag of `kiln serve`; lists are arrays, switches are booleans.\n\
         # Precedence: this file < the environment (KILN_*; for the unit, `systemctl edit kiln`\n\
         # and Environment=) < the command line. An unknown key is an error.\n\
         # After a change: `systemctl restart kiln` (`systemctl reload kiln`, SIGHUP, re-reads only the credentials file and log-level).\n\
         #\n\
         # Generated from the command's definitions by `cargo xtask dist`.\n",
    );
    let serve = crate::config::command()
        .find_subcommand("serve")
        .cloned()
        .unwrap_or_else(|| clap::Command::new("serve"));
    for arg in serve.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == crate::config::CONFIG || arg.is_hide_set() {
            continue;
        }
        out.push('\n');
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        for line in wrap(&help, 96) {
            let _ = writeln!(out, "# {line}");
        }
        let mut facts = Vec::new();
        if let Some(env) = arg.get_env() {
            facts.push(format!("env: {}", env.to_string_lossy()));
        }
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let flag = matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse);
        if !defaults.is_empty() && !flag {
            let shown = defaults.join(",");
            let shown = if shown.is_empty() {
                "\"\"".to_string()
            } else {
                shown
            };
            facts.push(format!("default: {shown}"));
        }
        let possible: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|_| !flag)
            .map(|p| p.get_name().to_string())
            .collect();
        if !possible.is_empty() {
            facts.push(format!("one of: {}", possible.join(", ")));
        }
        if !facts.is_empty() {
            let _ = writeln!(out, "# {}", facts.join("; "));
        }
        match UNIT_VALUES.iter().find(|(key, _)| *key == long) {
            Some((_, value)) => {
                let _ = writeln!(out, "{long} = {value}");
            }
            None => {
                let _ = writeln!(out, "#{long} = {}", example(arg, &defaults));
            }
        }
    }
    out
}

/// The value shown on a commented-out line: the default in TOML, else a placeholder.
fn example(arg: &Arg, defaults: &[String]) -> String {
    match arg.get_action() {
        ArgAction::SetTrue => return "false".to_string(),
        ArgAction::SetFalse => return "true".to_string(),
        ArgAction::Append => {
            let items: Vec<String> = defaults.iter().map(|d| quoted(d)).collect();
            return format!("[{}]", items.join(", "));
        }
        _ => {}
    }
    let numeric = [
        TypeId::of::<u64>(),
        TypeId::of::<u32>(),
        TypeId::of::<usize>(),
        TypeId::of::<i64>(),
        TypeId::of::<f64>(),
    ]
    .iter()
    .any(|t| arg.get_value_parser().type_id() == *t);
    let name = || {
        arg.get_value_names()
            .and_then(|names| names.first())
            .map(|n| n.to_string())
            .unwrap_or_else(|| "VALUE".to_string())
    };
    match defaults.first() {
        Some(value) if numeric => value.clone(),
        Some(value) => quoted(value),
        // A placeholder: a number's is left bare, as no string would be accepted either.
        None if numeric => name(),
        None => quoted(&name()),
    }
}

fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// `text`'s paragraphs as lines of at most `width` characters (a word longer stays whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.split("\n\n") {
        if !lines.is_empty() {
            lines.push(String::new());
        }
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        if !line.is_empty() {
            lines.push(line);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the checked-in copy of `config_template()` is, from the workspace root.
    const CONFIG_TEMPLATE_PATH: &str = "packaging/kiln.toml";

    /// Fails when a flag changed and `packaging/kiln.toml` was not regenerated.
    #[test]
    fn the_packaged_config_file_is_fresh() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(CONFIG_TEMPLATE_PATH);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == config_template(),
            "{CONFIG_TEMPLATE_PATH} is stale: run `cargo xtask dist` and commit the result"
        );
    }

    /// The template, as shipped, is a config file `kiln serve` accepts, and it sets the unit's
    /// values; each commented-out line, uncommented alone, is accepted too (placeholders aside).
    #[test]
    fn the_template_parses_with_its_lines_uncommented() {
        let template = config_template();
        let table: toml::Table = template.parse().expect("TOML");
        assert_eq!(
            table.get("data-dir").and_then(|v| v.as_str()),
            Some("/var/lib/kiln")
        );
        let dir = tempfile::tempdir().expect("tempdir");
        for line in template
            .lines()
            .filter(|l| l.starts_with('#') && l.contains(" = "))
        {
            let Some(uncommented) = line.strip_prefix('#') else {
                continue;
            };
            if uncommented.starts_with(' ') || uncommented.contains("\"VALUE") {
                continue;
            }
            let key = uncommented.split(" = ").next().unwrap_or_default();
            // Placeholders (value names) are not meant to parse; defaults are.
            let arg_has_default = crate::config::command()
                .find_subcommand("serve")
                .and_then(|s| {
                    s.get_arguments()
                        .find(|a| a.get_long() == Some(key))
                        .cloned()
                })
                .map(|a| {
                    !a.get_default_values().is_empty()
                        || matches!(a.get_action(), ArgAction::SetTrue | ArgAction::Append)
                })
                .unwrap_or(false);
            if !arg_has_default {
                continue;
            }
            let path = dir.path().join("one.toml");
            std::fs::write(&path, format!("{uncommented}\n")).expect("write");
            let argv = vec![
                "kiln".into(),
                "serve".into(),
                "--config".into(),
                path.into_os_string(),
            ];
            if let Err(e) = crate::config::parse(argv) {
                panic!("{uncommented}: {e}");
            }
        }
    }
}
