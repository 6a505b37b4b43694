//! UpdateOS and Reboot.
//!
//! # Reboot
//!
//! Inputs (optional): `delaySeconds` (default 0). The module waits `delaySeconds` (the step's
//! timeout does not apply, as AWSTOE documents for Reboot) and answers
//! [`ActionFailure::Reboot`]. For a Reboot step the engine treats the step as **finished** once
//! the target has rebooted (it does not run it again, unlike exit code 194 from ExecuteBash or
//! ExecuteBinary, which re-runs the same step); the engine tells the two apart by the step's
//! action kind.
//!
//! # UpdateOS
//!
//! Inputs (optional; may be absent or null): `include` and `exclude`, lists of package names.
//! The package manager is chosen by what the target has, in this order:
//!
//! - `apt-get`: `apt-get update`, then
//!   - no `include`: `apt-get -y upgrade`; when `exclude` is given, the excluded packages that
//!     are not already on hold are put on hold (`apt-mark hold`) for the upgrade and released
//!     (`apt-mark unhold`) afterwards, also when the upgrade failed or timed out. apt-get has no
//!     exclude option, and holding is what Debian documents for keeping a package back;
//!     packages the user had held already stay held.
//!   - with `include`: `apt-get -y install --only-upgrade <include minus exclude>` (only packages
//!     already installed are upgraded; nothing new is installed). When nothing is left after
//!     the exclusions, only `apt-get update` runs.
//!
//!   Upgrades run with `DEBIAN_FRONTEND=noninteractive` and keep locally changed configuration
//!   files (`--force-confdef --force-confold`), so no prompt can stall the step.
//! - `dnf`, else `yum`: `dnf -y update [include...] [--exclude=<name>...]` (both accept the
//!   same syntax, including wildcards).
//! - neither: the step fails with "UpdateOS: neither apt-get nor dnf/yum found in the target".
//!
//! Every command runs in the target through [`run_command`] with the step's deadline; its
//! output streams to the console. The step has no outputs.

use super::exec::{exit_message, run_command, string_list};
use super::inputs::{describe, Text};
use super::{ActionContext, ActionFailure, ActionKind, Outputs, Stream};
use crate::yaml::Value;
use serde::Deserialize;
use std::time::{Duration, Instant};

/// How long the `apt-mark unhold` clean-up may take when the step's deadline has already passed.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateInputs {
    #[serde(default)]
    include: Option<Value>,
    #[serde(default)]
    exclude: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RebootInputs {
    #[serde(default)]
    delay_seconds: Option<Text>,
}

pub fn validate(kind: ActionKind, inputs: &Value) -> Result<(), String> {
    match kind {
        ActionKind::UpdateOS => update_inputs(inputs).map(|_| ()),
        ActionKind::Reboot => reboot_inputs(inputs).map(|_| ()),
        _ => Err(format!("{} is not a system action", kind.name())),
    }
}

pub fn run(
    kind: ActionKind,
    ctx: &ActionContext,
    inputs: &Value,
) -> Result<Outputs, ActionFailure> {
    match kind {
        ActionKind::UpdateOS => run_update(ctx, inputs),
        ActionKind::Reboot => run_reboot(ctx, inputs),
        _ => Err(ActionFailure::failed(format!(
            "{} is not a system action",
            kind.name()
        ))),
    }
}

/// Absent or null inputs are an empty mapping.
fn optional_mapping(inputs: &Value, keys: &str) -> Result<Value, String> {
    match inputs {
        Value::Null => Ok(Value::Mapping(Default::default())),
        Value::Mapping(_) => Ok(inputs.clone()),
        other => Err(format!(
            "inputs must be a mapping with {keys}, found {}",
            describe(other)
        )),
    }
}

fn update_inputs(inputs: &Value) -> Result<(Vec<String>, Vec<String>), String> {
    let map = optional_mapping(inputs, "`include` and `exclude`")?;
    let parsed: UpdateInputs = super::inputs::parse(&map)?;
    let list = |v: &Option<Value>, field: &str| match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => string_list(v, field),
    };
    let include = list(&parsed.include, "include")?;
    let exclude = list(&parsed.exclude, "exclude")?;
    let clean = |l: Vec<String>| -> Vec<String> {
        l.into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    Ok((clean(include), clean(exclude)))
}

fn reboot_inputs(inputs: &Value) -> Result<Option<Text>, String> {
    let map = optional_mapping(inputs, "`delaySeconds`")?;
    let parsed: RebootInputs = super::inputs::parse(&map)?;
    Ok(parsed.delay_seconds)
}

/// A package manager UpdateOS knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageManager {
    Apt,
    /// `dnf` or `yum` (the program name).
    Dnf(&'static str),
}

impl PackageManager {
    /// The first package manager the target has: apt-get, dnf, yum.
    pub fn detect(target: &dyn crate::target::Target) -> Option<PackageManager> {
        if target.binary_exists("apt-get") {
            Some(PackageManager::Apt)
        } else if target.binary_exists("dnf") {
            Some(PackageManager::Dnf("dnf"))
        } else if target.binary_exists("yum") {
            Some(PackageManager::Dnf("yum"))
        } else {
            None
        }
    }
}

/// One command of an update plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedCommand {
    pub program: String,
    pub args: Vec<String>,
    /// A clean-up: runs even when an earlier command failed or timed out.
    pub always: bool,
}

fn planned(program: &str, args: &[&str], extra: &[String], always: bool) -> PlannedCommand {
    PlannedCommand {
        program: program.to_string(),
        args: args
            .iter()
            .map(|s| s.to_string())
            .chain(extra.iter().cloned())
            .collect(),
        always,
    }
}

const APT_UPGRADE_OPTIONS: [&str; 4] = [
    "-o",
    "Dpkg::Options::=--force-confdef",
    "-o",
    "Dpkg::Options::=--force-confold",
];

/// The commands UpdateOS runs for `include`/`exclude` with package manager `pm`.
/// `already_held` (apt only) names packages on hold before the step; they are neither held nor
/// released by it.
pub fn update_plan(
    pm: PackageManager,
    include: &[String],
    exclude: &[String],
    already_held: &[String],
) -> Vec<PlannedCommand> {
    match pm {
        PackageManager::Apt => {
            let mut plan = vec![planned("apt-get", &["update"], &[], false)];
            if !include.is_empty() {
                let wanted: Vec<String> = include
                    .iter()
                    .filter(|p| !exclude.contains(p))
                    .cloned()
                    .collect();
                if !wanted.is_empty() {
                    let mut args = vec!["-y"];
                    args.extend(APT_UPGRADE_OPTIONS);
                    args.extend(["install", "--only-upgrade"]);
                    plan.push(planned("apt-get", &args, &wanted, false));
                }
                return plan;
            }
            let mut hold: Vec<String> = Vec::new();
            for p in exclude {
                if !already_held.contains(p) && !hold.contains(p) {
                    hold.push(p.clone());
                }
            }
            if !hold.is_empty() {
                plan.push(planned("apt-mark", &["hold"], &hold, false));
            }
            let mut args = vec!["-y"];
            args.extend(APT_UPGRADE_OPTIONS);
            args.push("upgrade");
            plan.push(planned("apt-get", &args, &[], false));
            if !hold.is_empty() {
                plan.push(planned("apt-mark", &["unhold"], &hold, true));
            }
            plan
        }
        PackageManager::Dnf(program) => {
            let excludes: Vec<String> = exclude.iter().map(|p| format!("--exclude={p}")).collect();
            let mut args: Vec<String> = vec!["-y".into(), "update".into()];
            args.extend(include.iter().cloned());
            args.extend(excludes);
            vec![PlannedCommand {
                program: program.to_string(),
                args,
                always: false,
            }]
        }
    }
}

fn run_update(ctx: &ActionContext, inputs: &Value) -> Result<Outputs, ActionFailure> {
    let (include, exclude) =
        update_inputs(inputs).map_err(|m| ActionFailure::failed(format!("UpdateOS: {m}")))?;
    let Some(pm) = PackageManager::detect(ctx.target) else {
        return Err(ActionFailure::failed(
            "UpdateOS: neither apt-get nor dnf/yum found in the target",
        ));
    };
    let already_held = if pm == PackageManager::Apt && include.is_empty() && !exclude.is_empty() {
        let out = run_planned(ctx, &planned("apt-mark", &["showhold"], &[], false))?;
        out.split_whitespace().map(str::to_string).collect()
    } else {
        Vec::new()
    };
    let plan = update_plan(pm, &include, &exclude, &already_held);
    let mut first_failure: Option<ActionFailure> = None;
    for step in &plan {
        if first_failure.is_some() && !step.always {
            continue;
        }
        let cleanup_after_trouble =
            step.always && (first_failure.is_some() || ctx.remaining() == Some(Duration::ZERO));
        let result = if cleanup_after_trouble {
            // A clean-up after a failure or timeout: give it its own short deadline.
            let cleanup = ActionContext {
                target: ctx.target,
                config: ctx.config,
                console: ctx.console,
                deadline: Some(
                    ctx.deadline
                        .map_or(Instant::now(), |d| d.max(Instant::now()))
                        + CLEANUP_TIMEOUT,
                ),
                scratch: ctx.scratch,
                scratch_in_target: ctx.scratch_in_target,
            };
            run_planned(&cleanup, step)
        } else {
            run_planned(ctx, step)
        };
        if let Err(f) = result {
            if first_failure.is_none() {
                first_failure = Some(f);
            } else {
                let msg = match &f {
                    ActionFailure::Failed(m) => m.clone(),
                    other => format!("{other:?}"),
                };
                ctx.console
                    .line(Stream::Stderr, &format!("clean-up failed: {msg}"));
            }
        }
    }
    match first_failure {
        Some(f) => Err(f),
        None => Ok(Outputs::new()),
    }
}

/// Runs one planned command; a non-zero status fails the step (194 included: an update tool's
/// status is not a reboot request).
fn run_planned(ctx: &ActionContext, step: &PlannedCommand) -> Result<String, ActionFailure> {
    let mut cmd = ctx.target.command(&step.program, &step.args);
    cmd.env("DEBIAN_FRONTEND", "noninteractive");
    let label = format!("UpdateOS: {} {}", step.program, step.args.join(" "));
    let out = run_command(ctx, cmd).map_err(|f| match f {
        ActionFailure::Failed(m) => ActionFailure::Failed(format!("UpdateOS: {m}")),
        other => other,
    })?;
    if out.status == 0 {
        Ok(out.stdout)
    } else {
        Err(ActionFailure::Failed(exit_message(label.trim_end(), &out)))
    }
}

fn run_reboot(ctx: &ActionContext, inputs: &Value) -> Result<Outputs, ActionFailure> {
    let delay = reboot_inputs(inputs).map_err(|m| ActionFailure::failed(format!("Reboot: {m}")))?;
    let seconds = match &delay {
        None => 0,
        Some(t) if t.as_str().trim().is_empty() => 0,
        Some(t) => t
            .number("delaySeconds")
            .map_err(|m| ActionFailure::failed(format!("Reboot: {m}")))?,
    };
    if seconds < 0 {
        return Err(ActionFailure::failed(format!(
            "Reboot: delaySeconds must not be negative, not {seconds}"
        )));
    }
    if seconds > 0 {
        ctx.console
            .line(Stream::Stdout, &format!("Rebooting in {seconds} seconds"));
        std::thread::sleep(Duration::from_secs(seconds as u64));
    }
    Err(ActionFailure::Reboot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::ActionConfig;
    use crate::target::LocalTarget;

    type Collect = crate::actions::RecordingConsole;

    fn yaml(src: &str) -> Value {
        crate::yaml::from_str(src).unwrap()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn with_ctx<R>(target: &LocalTarget, f: impl FnOnce(&ActionContext) -> R) -> R {
        let dir = tempfile::tempdir().unwrap();
        let in_target = dir.path().display().to_string();
        let config = ActionConfig::default();
        let console = Collect::default();
        let ctx = ActionContext {
            target,
            config: &config,
            console: &console,
            deadline: None,
            scratch: dir.path(),
            scratch_in_target: &in_target,
        };
        f(&ctx)
    }

    #[test]
    fn validation_checks_shape() {
        let ok: &[(ActionKind, &str)] = &[
            (ActionKind::UpdateOS, "null"),
            (ActionKind::UpdateOS, "{}"),
            (
                ActionKind::UpdateOS,
                "{include: [kernel*, '{{ p }}'], exclude: [openssl]}",
            ),
            (ActionKind::UpdateOS, "{exclude: null}"),
            (ActionKind::Reboot, "null"),
            (ActionKind::Reboot, "{delaySeconds: 60}"),
            (ActionKind::Reboot, "{delaySeconds: '{{ delay }}'}"),
        ];
        for (kind, src) in ok {
            assert_eq!(validate(*kind, &yaml(src)), Ok(()), "{src}");
        }
        let bad: &[(ActionKind, &str, &str)] = &[
            (
                ActionKind::UpdateOS,
                "{include: vim}",
                "include must be a list of strings, found a string",
            ),
            (
                ActionKind::UpdateOS,
                "{exclude: [a, {b: c}]}",
                "exclude must be a list of strings (exclude[1] is a mapping)",
            ),
            (
                ActionKind::UpdateOS,
                "{packages: [a]}",
                "unknown field `packages`",
            ),
            (
                ActionKind::UpdateOS,
                "[a]",
                "inputs must be a mapping with `include` and `exclude`, found a list",
            ),
            (ActionKind::Reboot, "{delay: 5}", "unknown field `delay`"),
            (
                ActionKind::Reboot,
                "{delaySeconds: [5]}",
                "expected a single value, found a list",
            ),
        ];
        for (kind, src, want) in bad {
            let err = validate(*kind, &yaml(src)).unwrap_err();
            assert!(err.contains(want), "{src}: {err}");
        }
    }

    fn render(plan: &[PlannedCommand]) -> Vec<String> {
        plan.iter()
            .map(|c| {
                let line = format!("{} {}", c.program, c.args.join(" "));
                if c.always {
                    format!("{line} [always]")
                } else {
                    line
                }
            })
            .collect()
    }

    #[test]
    fn update_plans() {
        const OPTS: &str = "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold";
        type Case<'a> = (
            PackageManager,
            &'a [&'a str],
            &'a [&'a str],
            &'a [&'a str],
            Vec<String>,
        );
        let cases: Vec<Case> = vec![
            (
                PackageManager::Apt,
                &[],
                &[],
                &[],
                vec![
                    "apt-get update".into(),
                    format!("apt-get -y {OPTS} upgrade"),
                ],
            ),
            (
                PackageManager::Apt,
                &["vim", "curl", "openssl"],
                &["openssl"],
                &[],
                vec![
                    "apt-get update".into(),
                    format!("apt-get -y {OPTS} install --only-upgrade vim curl"),
                ],
            ),
            (
                PackageManager::Apt,
                &["openssl"],
                &["openssl"],
                &[],
                vec!["apt-get update".into()],
            ),
            (
                PackageManager::Apt,
                &[],
                &["linux-image-generic", "docker-ce", "linux-image-generic"],
                &["docker-ce"],
                vec![
                    "apt-get update".into(),
                    "apt-mark hold linux-image-generic".into(),
                    format!("apt-get -y {OPTS} upgrade"),
                    "apt-mark unhold linux-image-generic [always]".into(),
                ],
            ),
            (
                PackageManager::Apt,
                &[],
                &["docker-ce"],
                &["docker-ce"],
                vec![
                    "apt-get update".into(),
                    format!("apt-get -y {OPTS} upgrade"),
                ],
            ),
            (
                PackageManager::Dnf("dnf"),
                &[],
                &[],
                &[],
                vec!["dnf -y update".into()],
            ),
            (
                PackageManager::Dnf("yum"),
                &["kernel*", "vim"],
                &["kernel-devel", "python3"],
                &[],
                vec!["yum -y update kernel* vim --exclude=kernel-devel --exclude=python3".into()],
            ),
            (
                PackageManager::Dnf("dnf"),
                &[],
                &["kernel*"],
                &[],
                vec!["dnf -y update --exclude=kernel*".into()],
            ),
        ];
        for (pm, include, exclude, held, want) in cases {
            let got = render(&update_plan(
                pm,
                &strings(include),
                &strings(exclude),
                &strings(held),
            ));
            assert_eq!(got, want, "{pm:?} include={include:?} exclude={exclude:?}");
        }
    }

    #[test]
    fn update_without_a_package_manager_fails_clearly() {
        let empty = tempfile::tempdir().unwrap();
        let target = LocalTarget::chroot(empty.path());
        assert_eq!(PackageManager::detect(&target), None);
        let r = with_ctx(&target, |ctx| run(ActionKind::UpdateOS, ctx, &Value::Null));
        assert_eq!(
            r,
            Err(ActionFailure::Failed(
                "UpdateOS: neither apt-get nor dnf/yum found in the target".into()
            ))
        );
    }

    #[test]
    fn package_manager_detection_order() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("usr/bin");
        std::fs::create_dir_all(&bin).unwrap();
        let add = |name: &str| {
            let p = bin.join(name);
            std::fs::write(&p, b"#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        let target = LocalTarget::chroot(root.path());
        add("yum");
        assert_eq!(
            PackageManager::detect(&target),
            Some(PackageManager::Dnf("yum"))
        );
        add("dnf");
        assert_eq!(
            PackageManager::detect(&target),
            Some(PackageManager::Dnf("dnf"))
        );
        add("apt-get");
        assert_eq!(PackageManager::detect(&target), Some(PackageManager::Apt));
    }

    #[test]
    fn reboot_asks_for_a_reboot() {
        let target = LocalTarget::host();
        for src in ["null", "{}", "{delaySeconds: 0}", "{delaySeconds: '0'}"] {
            let r = with_ctx(&target, |ctx| run(ActionKind::Reboot, ctx, &yaml(src)));
            assert_eq!(r, Err(ActionFailure::Reboot), "{src}");
        }
        let start = Instant::now();
        let r = with_ctx(&target, |ctx| {
            run(ActionKind::Reboot, ctx, &yaml("{delaySeconds: 1}"))
        });
        assert_eq!(r, Err(ActionFailure::Reboot));
        assert!(start.elapsed() >= Duration::from_secs(1));
        let r = with_ctx(&target, |ctx| {
            run(ActionKind::Reboot, ctx, &yaml("{delaySeconds: soon}"))
        });
        assert_eq!(
            r,
            Err(ActionFailure::Failed(
                "Reboot: delaySeconds must be a whole number, not `soon`".into()
            ))
        );
        let r = with_ctx(&target, |ctx| {
            run(ActionKind::Reboot, ctx, &yaml("{delaySeconds: -3}"))
        });
        assert!(matches!(r, Err(ActionFailure::Failed(m)) if m.contains("must not be negative")));
    }
}
