//! `kiln image findings ARN`: an image's vulnerability scan findings (ListImageScanFindings,
//! every page) as a table a person reads at a glance: the most severe first, with the
//! packages, what they are at, what fixes them, and a line of counts by severity on top.
//! `--json` prints the findings as the API answered them.

use crate::client::{Client, EndpointArgs};
use anyhow::Result;
use serde_json::{json, Value};

#[derive(clap::Args, Debug)]
pub struct FindingsArgs {
    /// The image build version ARN.
    pub image_build_version_arn: String,
    /// Only findings of this severity (CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL, UNTRIAGED).
    #[arg(long)]
    pub severity: Option<String>,
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
}

const ORDER: [&str; 6] = [
    "CRITICAL",
    "HIGH",
    "MEDIUM",
    "LOW",
    "INFORMATIONAL",
    "UNTRIAGED",
];

fn rank(severity: &str) -> usize {
    ORDER
        .iter()
        .position(|s| *s == severity)
        .unwrap_or(ORDER.len())
}

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut at = v;
    for key in path {
        at = &at[*key];
    }
    at.as_str().unwrap_or("")
}

/// Cuts `s` to `width` characters (with an ellipsis).
fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let kept: String = s.chars().take(width.saturating_sub(1)).collect();
        format!("{kept}…")
    }
}

pub fn print(args: &FindingsArgs) -> Result<()> {
    let client = Client::new(&args.endpoint)?;
    let mut findings: Vec<Value> = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut input = json!({
            "filters": [{"name": "imageBuildVersionArn", "values": [args.image_build_version_arn]}],
            "maxResults": 100,
        });
        if let Some(t) = &token {
            input["nextToken"] = json!(t);
        }
        let answer = client.call_api("ListImageScanFindings", &input)?;
        if let Some(page) = answer["findings"].as_array() {
            findings.extend(page.iter().cloned());
        }
        token = answer["nextToken"].as_str().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    if let Some(wanted) = &args.severity {
        findings.retain(|f| f["severity"].as_str() == Some(wanted.as_str()));
    }
    findings.sort_by(|a, b| {
        rank(text(a, &["severity"]))
            .cmp(&rank(text(b, &["severity"])))
            .then_with(|| {
                b["inspectorScore"]
                    .as_f64()
                    .unwrap_or(0.0)
                    .total_cmp(&a["inspectorScore"].as_f64().unwrap_or(0.0))
            })
            .then_with(|| {
                text(a, &["packageVulnerabilityDetails", "vulnerabilityId"])
                    .cmp(text(b, &["packageVulnerabilityDetails", "vulnerabilityId"]))
            })
    });
    if args.json {
        println!("{}", Value::Array(findings));
        return Ok(());
    }
    let image = client.call_api_get(
        "GetImage",
        &[("imageBuildVersionArn", &args.image_build_version_arn)],
    )?;
    let state = &image["image"]["scanState"];
    match state["status"].as_str() {
        Some(status) => {
            let reason = state["reason"]
                .as_str()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            println!("scan {status}{reason}");
        }
        None => println!("the image is not scanned (imageScanningConfiguration is off)"),
    }
    let counts: Vec<String> = ORDER
        .iter()
        .map(|s| {
            (
                s,
                findings
                    .iter()
                    .filter(|f| f["severity"].as_str() == Some(*s))
                    .count(),
            )
        })
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| format!("{n} {s}"))
        .collect();
    if findings.is_empty() {
        println!("no findings");
        return Ok(());
    }
    println!("{} findings: {}", findings.len(), counts.join(", "));
    println!(
        "{:<13} {:<18} {:>5}  {:<4} {:<28} {:<26} FIXED IN",
        "SEVERITY", "VULNERABILITY", "SCORE", "FIX", "PACKAGE", "INSTALLED"
    );
    for f in &findings {
        let details = &f["packageVulnerabilityDetails"];
        let packages = details["vulnerablePackages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let score = f["inspectorScore"]
            .as_f64()
            .map(|s| format!("{s:.1}"))
            .unwrap_or_else(|| "-".into());
        for (i, p) in packages.iter().enumerate() {
            let installed = match (p["version"].as_str(), p["release"].as_str()) {
                (Some(v), Some(r)) if !r.is_empty() => format!("{v}-{r}"),
                (Some(v), _) => v.to_string(),
                _ => String::new(),
            };
            let (severity, id, score, fix) = if i == 0 {
                (
                    text(f, &["severity"]).to_string(),
                    text(details, &["vulnerabilityId"]).to_string(),
                    score.clone(),
                    text(f, &["fixAvailable"]).to_string(),
                )
            } else {
                Default::default()
            };
            println!(
                "{:<13} {:<18} {:>5}  {:<4} {:<28} {:<26} {}",
                severity,
                cut(&id, 18),
                score,
                fix,
                cut(text(p, &["name"]), 28),
                cut(&installed, 26),
                p["fixedInVersion"].as_str().unwrap_or("-")
            );
        }
    }
    Ok(())
}
