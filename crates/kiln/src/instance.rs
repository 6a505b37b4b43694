//! `kiln instance shell`: a shell (or a command) inside a build instance the server kept (an
//! infrastructure configuration with `terminateInstanceOnFailure: false`) or that is running.
//!
//! The server says where the instance lives (`GET /kiln/v1/instances/<id>`); this process then
//! joins it locally (as root, or as the server's own user for a rootless instance):
//! [`Instance::attach`] rebuilds how its commands are isolated
//! (root, hostname, network, cgroups) without taking it over, so leaving the shell leaves the
//! instance as it was. Exit code: the command's (128 + signal when it was killed), 1 when it
//! could not start, 2 for bad flags.

use crate::client::{Client, EndpointArgs};
use anyhow::{bail, Context, Result};
use kiln_instance::Instance;
use kiln_toe::target::Target;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;

#[derive(clap::Subcommand, Debug)]
pub enum InstanceCommand {
    /// Run /bin/sh (or the command after `--`) inside an instance (as root, or as the user of a
    /// rootless server).
    Shell(ShellArgs),
}

#[derive(clap::Args, Debug)]
pub struct ShellArgs {
    /// The instance id (`<build id>-build` or `<build id>-test`).
    pub id: String,
    /// The command to run instead of /bin/sh, after `--`.
    #[arg(last = true)]
    pub command: Vec<String>,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
}

#[derive(serde::Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct InstanceInfo {
    id: String,
    instances_directory: PathBuf,
    #[serde(default)]
    image_build_version_arn: Option<String>,
}

/// Runs a `kiln instance` command and answers the process exit code.
pub fn main(command: InstanceCommand) -> i32 {
    let result = match command {
        InstanceCommand::Shell(args) => shell(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kiln instance: {e:#}");
            1
        }
    }
}

fn shell(args: &ShellArgs) -> Result<i32> {
    let client = Client::new(&args.endpoint)?;
    let answer = client.get(&["instances", &args.id], &[])?;
    let body = answer.bytes(client.endpoint())?;
    let info: InstanceInfo = serde_json::from_slice(&body).with_context(|| {
        format!(
            "Kiln at {} answered what is not an instance: {}",
            client.endpoint(),
            String::from_utf8_lossy(&body)
        )
    })?;
    if info.id != args.id {
        bail!(
            "Kiln at {} answered instance '{}' for '{}'",
            client.endpoint(),
            info.id,
            args.id
        );
    }
    // As root, the instance's namespaces and cgroups; unprivileged, the user namespace of a
    // rootless instance (a server running as the same user made it).
    let sys = kiln_instance::privileged_for_this_process();
    if let Err(why) = sys.preflight() {
        bail!("entering instance '{}': {why}", args.id);
    }
    let instance = Instance::attach(sys, &info.instances_directory, &args.id)
        .with_context(|| format!("opening instance '{}'", args.id))?;
    if let Some(arn) = &info.image_build_version_arn {
        eprintln!("kiln: instance {} of {arn}", args.id);
    }
    let (program, rest) = match args.command.split_first() {
        Some((p, rest)) => (p.as_str(), rest),
        None => ("/bin/sh", &[][..]),
    };
    let term = std::env::var("TERM").unwrap_or_else(|_| "xterm".to_string());
    let mut cmd = instance.command(program, rest);
    cmd.env("TERM", term)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    let status = cmd
        .status()
        .with_context(|| format!("running {program} in instance '{}'", args.id))?;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}
