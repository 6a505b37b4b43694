//! `kiln lifecycle schedule ARN`: when a lifecycle policy runs next (`GET /kiln/v1/lifecycle`);
//! `kiln lifecycle show LCE_ID`: what a lifecycle execution did, in `kiln logs` style, one line
//! per resource (`<time> <ACTION> <resource> <STATUS> <reason>`): each image, then its AMIs or
//! container images indented under it. `show` reads the public API (GetLifecycleExecution,
//! ListLifecycleExecutionResources), as any client could.

use crate::client::{field, Client, EndpointArgs};
use anyhow::{Context, Result};
use serde_json::{json, Value};

#[derive(clap::Subcommand, Debug)]
pub enum LifecycleCommand {
    /// Show when a lifecycle policy runs next (Kiln picks the daily time).
    Schedule(ScheduleArgs),
    /// Print what a lifecycle execution did, one line per resource.
    Show(ShowArgs),
}

#[derive(clap::Args, Debug)]
pub struct ScheduleArgs {
    /// The lifecycle policy's ARN.
    pub arn: String,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
}

#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    /// The execution's id (`lce-...`).
    pub id: String,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
}

/// Runs a `kiln lifecycle` command and answers the process exit code.
pub fn main(command: LifecycleCommand) -> i32 {
    let result = match command {
        LifecycleCommand::Schedule(args) => schedule(&args),
        LifecycleCommand::Show(args) => show(&args),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("kiln lifecycle: {e:#}");
            1
        }
    }
}

fn schedule(args: &ScheduleArgs) -> Result<()> {
    let client = Client::new(&args.endpoint)?;
    let v = client.get_json(&["lifecycle"], &[("lifecyclePolicyArn", &args.arn)])?;
    if args.json {
        println!("{v}");
        return Ok(());
    }
    println!("policy:    {}", field(&v, "lifecyclePolicyArn"));
    println!("status:    {}", field(&v, "status"));
    println!("next run:  {}", field(&v, "nextRunTime"));
    println!("last run:  {}", field(&v, "dateLastRun"));
    println!("running:   {}", field(&v, "runningExecutionId"));
    Ok(())
}

/// An API timestamp (seconds) as RFC 3339.
fn time_of(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_f64)
        .and_then(|s| chrono::DateTime::from_timestamp_millis((s * 1000.0) as i64))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| "-".to_string())
}

/// Every resource row under `parent` (the images when `None`), following `nextToken`.
fn rows(client: &Client, id: &str, parent: Option<&str>) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut input = json!({ "lifecycleExecutionId": id });
        if let Some(p) = parent {
            input["parentResourceId"] = json!(p);
        }
        if let Some(t) = &token {
            input["nextToken"] = json!(t);
        }
        let page = client.call_api("ListLifecycleExecutionResources", &input)?;
        out.extend(
            page.get("resources")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        );
        token = page
            .get("nextToken")
            .and_then(Value::as_str)
            .map(str::to_string);
        if token.is_none() {
            return Ok(out);
        }
    }
}

fn line(r: &Value, indent: &str) -> String {
    let action = r
        .pointer("/action/name")
        .and_then(Value::as_str)
        .unwrap_or("-");
    let status = r
        .pointer("/state/status")
        .and_then(Value::as_str)
        .unwrap_or("-");
    let reason = r
        .pointer("/state/reason")
        .and_then(Value::as_str)
        .or_else(|| r.pointer("/action/reason").and_then(Value::as_str))
        .unwrap_or("");
    format!(
        "{} {indent}{action} {} {status} {reason}",
        time_of(r, "startTime"),
        field(r, "resourceId")
    )
    .trim_end()
    .to_string()
}

fn show(args: &ShowArgs) -> Result<()> {
    let client = Client::new(&args.endpoint)?;
    let got = client.call_api_get(
        "GetLifecycleExecution",
        &[("lifecycleExecutionId", args.id.as_str())],
    )?;
    let e = got
        .get("lifecycleExecution")
        .context("the answer has no lifecycleExecution")?;
    println!(
        "{} execution {} of {} {}{}",
        time_of(e, "startTime"),
        field(e, "lifecycleExecutionId"),
        field(e, "lifecyclePolicyArn"),
        e.pointer("/state/status")
            .and_then(Value::as_str)
            .unwrap_or("-"),
        e.pointer("/state/reason")
            .and_then(Value::as_str)
            .map(|r| format!(" {r}"))
            .unwrap_or_default()
    );
    for image in rows(&client, &args.id, None)? {
        println!("{}", line(&image, ""));
        let arn = field(&image, "resourceId");
        for child in rows(&client, &args.id, Some(&arn))? {
            println!("{}", line(&child, "  "));
        }
    }
    if e.get("endTime").is_some_and(|v| !v.is_null()) {
        println!("{} execution ended", time_of(e, "endTime"));
    }
    Ok(())
}
