//! `kiln pipeline schedule ARN`: what a pipeline's schedule did lately, from a running server
//! (`GET /kiln/v1/schedule`): its next run, its consecutive failures and auto-disable limit, and
//! the recent firings with what each did (started a build, skipped it and why, could not start
//! one) and why the pipeline disabled itself. `--json` prints the server's answer as it is.

use crate::client::{field, Client, EndpointArgs};
use anyhow::Result;
use serde_json::Value;

#[derive(clap::Subcommand, Debug)]
pub enum PipelineCommand {
    /// Show a pipeline's schedule: next run, failures, and what recent firings did.
    Schedule(ScheduleArgs),
}

#[derive(clap::Args, Debug)]
pub struct ScheduleArgs {
    /// The image pipeline's ARN.
    pub arn: String,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
}

/// Runs a `kiln pipeline` command and answers the process exit code.
pub fn main(command: PipelineCommand) -> i32 {
    let result = match command {
        PipelineCommand::Schedule(args) => schedule(&args),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("kiln pipeline: {e:#}");
            1
        }
    }
}

fn schedule(args: &ScheduleArgs) -> Result<()> {
    let client = Client::new(&args.endpoint)?;
    let v = client.get_json(&["schedule"], &[("imagePipelineArn", &args.arn)])?;
    if args.json {
        println!("{v}");
        return Ok(());
    }
    println!("pipeline:             {}", field(&v, "imagePipelineArn"));
    println!("status:               {}", field(&v, "status"));
    println!(
        "schedule:             {} ({})",
        field(&v, "scheduleExpression"),
        field(&v, "timezone")
    );
    println!("next run:             {}", field(&v, "dateNextRun"));
    println!(
        "consecutive failures: {} (disables at {})",
        field(&v, "consecutiveFailures"),
        field(&v, "autoDisableFailureCount")
    );
    let events = v.get("events").and_then(Value::as_array);
    for e in events.into_iter().flatten() {
        println!(
            "{}  due {}  {:<15} {}{}",
            field(e, "at"),
            field(e, "due"),
            field(e, "outcome"),
            match e.get("imageBuildVersionArn").and_then(Value::as_str) {
                Some(arn) => format!("{arn}: "),
                None => String::new(),
            },
            field(e, "reason")
        );
    }
    Ok(())
}
