//! The step actions (contract §1.4), done by Kiln's own machinery: an "instance" is a Kiln
//! instance (namespaces over the image store's layers), CreateImage is the snapshot into the
//! image store, ExecuteComponents is the component engine, and the distribution actions are the
//! distribution code RetryImage also runs. WaitForAction is the driver's (it waits on the
//! stored record, see `driver`).

use super::context::{BuildContext, Live};
use kiln_core::workflow_runs::WorkflowRun;
use kiln_domain::resources::image::ImageType;
use kiln_domain::resources::workflow::WorkflowType;
use kiln_instance::{for_instance_types, Instance, InstanceSpec};
use serde_json::{json, Value};
use std::sync::Arc;

fn input_str<'a>(inputs: &'a Value, name: &str) -> Result<&'a str, String> {
    inputs
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("inputs.{name}: required (a string)"))
}

fn run_outputs(id: &str, output: Value) -> Value {
    json!({ "runCommandId": id, "status": "Success", "output": output })
}

/// Runs step `index` of `run` (action `action`, inputs resolved): its outputs, or why it failed.
pub fn run(
    ctx: &BuildContext,
    run: &WorkflowRun,
    index: usize,
    action: &str,
    inputs: &Value,
) -> Result<Value, String> {
    let stage = run.workflow_type;
    match action {
        "LaunchInstance" => launch(ctx, run.workflow_type, inputs),
        "ExecuteComponents" => execute_components(ctx, run, index, inputs),
        "CreateImage" => create_image(ctx, run, index, inputs),
        "TerminateInstance" => {
            let id = input_str(inputs, "instanceId")?;
            ctx.end_instance(id, false)?;
            Ok(json!({}))
        }
        "CollectImageMetadata" => {
            let id = input_str(inputs, "instanceId")?;
            let instance = ctx.instance(id)?.ok_or_else(|| {
                "a container build's instance has no root filesystem to read yet".to_string()
            })?;
            let metadata = ctx
                .builder()
                .collect_metadata(&instance, ctx.shared.config.rpm_timeout)?;
            let os = metadata.os.as_ref().map(|os| os.os_version());
            ctx.state().metadata = Some(metadata);
            Ok(
                json!({ "osVersion": os, "associationId": format!("kiln-inventory-{}", run.execution_id) }),
            )
        }
        "WaitForSSMAgent" => {
            ctx.instance(input_str(inputs, "instanceId")?)?;
            // Kiln's instances are ready as soon as they are launched: there is no agent.
            Ok(json!({ "status": "Success" }))
        }
        "SanitizeInstance" | "BootstrapInstanceForContainer" => {
            ctx.instance(input_str(inputs, "instanceId")?)?;
            // Nothing to do on a Kiln instance: no SSM agent or cloud-init state to clean, and
            // a container build runs the Dockerfile itself (no Docker to install).
            Ok(run_outputs(
                &run.step_id(index),
                json!(format!("{action}: nothing to do on a Kiln instance")),
            ))
        }
        "RunCommand" => run_command(ctx, run, index, inputs),
        "CollectImageScanFindings" => {
            let id = input_str(inputs, "instanceId")?;
            let instance = ctx.instance(id)?.ok_or_else(|| {
                "CollectImageScanFindings: a container build's instance has no root filesystem to scan".to_string()
            })?;
            let summary = super::scan::collect(ctx, &instance)?;
            Ok(run_outputs(&run.step_id(index), json!(summary)))
        }
        "RegisterImage" => {
            match ctx.built()? {
                Some(_) => Ok(json!({ "imageId": ctx.image.ami_id() })),
                None => Err(
                    "RegisterImage: Kiln registers only the image this build made, and it has made none yet".into(),
                ),
            }
        }
        "DistributeImage" | "DistributeContainerImage" => distribute(ctx, action),
        "ModifyImageAttributes" | "ApplyImageConfigurations" => {
            // The distribution configuration's launch permissions and post-copy configurations
            // are applied by DistributeImage with each copy (as the implicit distribution
            // does); these steps report what it did.
            let images = inputs
                .get("distributedImages")
                .cloned()
                .unwrap_or_else(|| json!([]));
            let key = if action == "ModifyImageAttributes" {
                "modifiedImages"
            } else {
                "configuredImages"
            };
            Ok(json!({ key: images }))
        }
        other => Err(format!(
            "{other} cannot run in a {} workflow on Kiln",
            stage.as_str()
        )),
    }
}

/// Undoes step `index` when its workflow aborts (only actions with a rollback are asked).
pub fn rollback(ctx: &BuildContext, action: &str, outputs: &Value) -> Result<(), String> {
    match action {
        "LaunchInstance" => match outputs.get("instanceId").and_then(Value::as_str) {
            Some(id) => {
                // terminateInstanceOnFailure: false keeps a failed build's instance to look at.
                let keep = ctx.request.keep_failed_instance && !ctx.cancelled();
                ctx.end_instance(id, keep)
            }
            None => Ok(()),
        },
        // Kiln's inventory collection made nothing to remove.
        _ => Ok(()),
    }
}

/// What a LaunchInstance starts from.
enum Launch {
    Image(kiln_image::ImageRef),
    /// A pending snapshot's layers (see `context::Pending`).
    Lowers(Vec<std::path::PathBuf>),
}

/// LaunchInstance: an instance for a step of a `stage` workflow (also the scan's, see `scan`).
pub fn launch(ctx: &BuildContext, stage: WorkflowType, inputs: &Value) -> Result<Value, String> {
    let base_role = match stage {
        WorkflowType::Build => "build".to_string(),
        _ => "test".to_string(),
    };
    let role = ctx.next_role(&base_role);
    let id = ctx.request.instance_id(&role);
    if ctx.request.container.is_some() && stage == WorkflowType::Build {
        ctx.state().instances.insert(id.clone(), Live::Deferred);
        return Ok(json!({ "instanceId": id }));
    }
    let limits = match inputs.get("instanceTypesOverride") {
        None => ctx.request.limits,
        Some(types) => {
            let types: Vec<String> = serde_json::from_value(types.clone()).map_err(|_| {
                "inputs.instanceTypesOverride: must be a list of instance type names".to_string()
            })?;
            for_instance_types(&types).map_err(|e| format!("inputs.instanceTypesOverride: {e}"))?
        }
    };
    let pending_lowers = ctx.state().pending.as_ref().map(|p| p.lowers.clone());
    let image = match inputs.get("imageIdOverride") {
        Some(v) => {
            let wanted = v
                .as_str()
                .ok_or("inputs.imageIdOverride: must be a string")?;
            if wanted == ctx.image.ami_id() {
                match (pending_lowers, ctx.built()?) {
                    (Some(lowers), _) => Launch::Lowers(lowers),
                    (None, Some(b)) => Launch::Image(b),
                    (None, None) => {
                        return Err(format!(
                            "inputs.imageIdOverride: {wanted} (this build's image) is not made yet"
                        ))
                    }
                }
            } else if let Some(p) = ctx.parent.as_ref().filter(|_| wanted == "parent") {
                Launch::Image(p.image.clone())
            } else {
                return Err(format!(
                    "inputs.imageIdOverride: Kiln launches this build's image ({}) or its parent (\"parent\"), not {wanted}",
                    ctx.image.ami_id()
                ));
            }
        }
        None => {
            let built = ctx.state().built.clone();
            match (stage, pending_lowers, built, ctx.parent.as_ref()) {
                (WorkflowType::Build, _, _, Some(p)) => Launch::Image(p.image.clone()),
                (_, Some(lowers), _, _) => Launch::Lowers(lowers),
                (_, None, Some(b), _) => Launch::Image(b),
                (_, None, None, Some(p)) => Launch::Image(p.image.clone()),
                _ => return Err("no image to launch: the build made none".into()),
            }
        }
    };
    let lowers = match image {
        Launch::Lowers(lowers) => lowers,
        Launch::Image(image) => ctx
            .shared
            .store
            .lower_dirs(&image)
            .map_err(|e| format!("image {}: {e}", image.tag))?,
    };
    let spec = InstanceSpec {
        id: id.clone(),
        lowers,
        limits,
        network: ctx.request.network,
        hostname: format!("kiln-{base_role}"),
    };
    let instance = Instance::launch(
        ctx.shared.sys.clone(),
        &ctx.request.instances_directory,
        spec,
    )
    .map_err(|e| format!("launching the {role} instance: {e}"))?;
    ctx.state()
        .instances
        .insert(id.clone(), Live::Running(Arc::new(instance)));
    Ok(json!({ "instanceId": id }))
}

fn execute_components(
    ctx: &BuildContext,
    run: &WorkflowRun,
    index: usize,
    inputs: &Value,
) -> Result<Value, String> {
    let id = input_str(inputs, "instanceId")?;
    let instance = ctx.instance(id)?;
    let run_id = run.step_id(index);
    let Some(instance) = instance else {
        // A container build: the Dockerfile runs now, and its image is the build's.
        let built = ctx
            .builder()
            .build_container_image(&ctx.request)
            .map_err(|e| e.reason)?;
        let mut state = ctx.state();
        state.built = Some(built.image);
        state.metadata = built.metadata;
        return Ok(run_outputs(&run_id, json!([])));
    };
    let phases: &[&str] = match run.workflow_type {
        WorkflowType::Test => &["test"],
        _ => &["build", "validate"],
    };
    let role = id
        .strip_prefix(&format!("{}-", ctx.request.build_id))
        .unwrap_or(id);
    let execution_id = format!("{}-{role}", ctx.request.build_id);
    if let Err(e) = ctx
        .builder()
        .run_phases(&instance, &ctx.request, phases, &execution_id)
    {
        if let Some(component) = e.component {
            ctx.state()
                .component_failures
                .insert((run.execution_id.clone(), index), *component);
        }
        return Err(e.message);
    }
    Ok(run_outputs(&run_id, json!([])))
}

fn create_image(
    ctx: &BuildContext,
    run: &WorkflowRun,
    index: usize,
    inputs: &Value,
) -> Result<Value, String> {
    let id = input_str(inputs, "instanceId")?;
    let instance = ctx
        .instance(id)?
        .ok_or("CreateImage: a container build's image is made by ExecuteComponents")?;
    ctx.log.event("stage snapshot started");
    if ctx.state().built.is_some() || ctx.state().pending.is_some() {
        return Err("CreateImage: this build has made its image already".into());
    }
    // When nothing after this step uses the instance but to terminate it (build-image), the
    // snapshot runs beside the next steps; a kept failed instance must stay whole, though.
    let only_terminate_after = run.execution.steps[index + 1..]
        .iter()
        .all(|s| s.action == "TerminateInstance");
    if only_terminate_after && !ctx.request.keep_failed_instance {
        let builder = ctx.builder();
        builder.detach_for_snapshot(&instance)?;
        let base = match ctx.parent.as_ref() {
            Some(p) => ctx
                .shared
                .store
                .lower_dirs(&p.image)
                .map_err(|e| format!("image {}: {e}", p.image.tag))?,
            None => Vec::new(),
        };
        let upper = instance.upper();
        let uid_map = instance.uid_map();
        let shared = ctx.shared.clone();
        let layer_of = upper.clone();
        let layer = std::thread::spawn(move || {
            shared
                .store
                .snapshot_layer_beside_build(&layer_of, kiln_image::Compression::Zstd, uid_map)
                .map_err(|e| e.to_string())
        });
        let mut lowers = vec![upper];
        lowers.extend(base);
        ctx.state().pending = Some(super::context::Pending {
            instance_id: id.to_string(),
            lowers,
            layer,
        });
        return Ok(json!({ "imageId": ctx.image.ami_id() }));
    }
    let base = ctx.parent.as_ref().map(|p| &p.image);
    let image = ctx.builder().snapshot(&ctx.request, &instance, base)?;
    ctx.state().built = Some(image);
    Ok(json!({ "imageId": ctx.image.ami_id() }))
}

fn run_command(
    ctx: &BuildContext,
    run: &WorkflowRun,
    index: usize,
    inputs: &Value,
) -> Result<Value, String> {
    let id = input_str(inputs, "instanceId")?;
    let document = input_str(inputs, "documentName")?;
    if document != "AWS-RunShellScript" {
        return Err(format!(
            "inputs.documentName: Kiln runs only AWS-RunShellScript, not {document}"
        ));
    }
    let commands: Vec<String> = inputs
        .get("parameters")
        .and_then(|p| p.get("commands"))
        .map(|c| serde_json::from_value(c.clone()))
        .transpose()
        .map_err(|_| "inputs.parameters.commands: must be a list of strings".to_string())?
        .ok_or("inputs.parameters.commands: required for AWS-RunShellScript")?;
    let instance = ctx
        .instance(id)?
        .ok_or("RunCommand: a container build's instance runs only its Dockerfile")?;
    let script = commands.join("\n");
    let output = kiln_toe::target::Target::command(
        instance.as_ref(),
        "/bin/sh",
        &["-c".to_string(), script],
    )
    .stdin(std::process::Stdio::null())
    .output()
    .map_err(|e| format!("running the commands: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    for line in stdout.lines() {
        ctx.log.event(&format!("RunCommand stdout: {line}"));
    }
    for line in stderr.lines() {
        ctx.log.event(&format!("RunCommand stderr: {line}"));
    }
    if !output.status.success() {
        let tail: String = stderr
            .chars()
            .rev()
            .take(300)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(format!(
            "the commands failed ({}): {}",
            output.status,
            tail.trim()
        ));
    }
    let lines: Vec<String> = stdout.lines().map(str::to_string).collect();
    Ok(run_outputs(&run.step_id(index), json!(lines)))
}

/// DistributeImage / DistributeContainerImage: today's distribution (containers to their
/// registries, the shared registry, an AMI image's AMIs and their post-copy configurations).
fn distribute(ctx: &BuildContext, action: &str) -> Result<Value, String> {
    let built = ctx
        .built()?
        .ok_or("no image to distribute: the build made none")?;
    let current = crate::run::read_image(ctx.shared, &ctx.image.arn.to_string())
        .ok_or("the image is gone")?;
    let delivered = crate::run::distribute_outputs(ctx.shared, &current, &built, ctx.log)?;
    let images: Vec<Value> = delivered
        .amis
        .iter()
        .map(|a| {
            json!({
                "region": a.region,
                "name": a.name,
                "amiId": a.image_id,
                "accountId": a.account_id,
                "status": "Completed",
                "step": "Completed",
            })
        })
        .collect();
    let regions: Vec<String> = delivered
        .containers
        .iter()
        .map(|c| c.region.clone())
        .collect();
    ctx.state().distributed = Some(delivered);
    if action == "DistributeContainerImage" || ctx.image.image_type == ImageType::Docker {
        return Ok(
            json!({ "status": "Success", "succeededRegions": regions, "failedRegions": [] }),
        );
    }
    Ok(json!({ "distributedImages": images }))
}
