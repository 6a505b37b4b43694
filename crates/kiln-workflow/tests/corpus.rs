//! Every workflow document of tests/corpus (real documents from public repositories) and every
//! managed workflow Kiln lists (owner `aws`) parses, and an execution of each with a plain AMI
//! context runs to the end when every step succeeds.

use kiln_workflow::execution::{Context, ExecutionStatus};
use kiln_workflow::{Document, Execution, Next};
use serde_json::json;
use std::path::PathBuf;

fn documents() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus/workflows");
    let mut docs: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("tests/corpus/workflows")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .map(|p| {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            (
                name,
                std::fs::read_to_string(&p).expect("readable document"),
            )
        })
        .collect();
    docs.sort();
    docs.extend(
        kiln_domain::resources::managed_workflows::DOCUMENTS
            .iter()
            .map(|(name, _, text)| (format!("managed {name}"), text.to_string())),
    );
    docs
}

#[test]
fn every_corpus_document_parses() {
    let docs = documents();
    assert!(docs.len() >= 10, "only {} corpus documents", docs.len());
    let failures: Vec<String> = docs
        .iter()
        .filter_map(|(name, text)| Document::parse(text).err().map(|e| format!("{name}: {e}")))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn every_corpus_document_runs_to_the_end() {
    for (name, text) in documents() {
        let doc = Document::parse(&text).expect("parses");
        // Give every required parameter a value of its type.
        let given: Vec<(String, Vec<String>)> = doc
            .parameters
            .iter()
            .filter(|p| p.default.is_none())
            .map(|p| {
                let value = match p.kind {
                    kiln_workflow::document::ParamType::Integer => "1",
                    kiln_workflow::document::ParamType::Boolean => "true",
                    _ => "x",
                };
                (p.name.clone(), vec![value.to_string()])
            })
            .collect();
        let context = Context {
            imagebuilder: json!({"imageType": "AMI", "platform": "Linux",
                "collectImageMetadata": true, "collectImageScanFindings": true}),
            // What build workflows hand on: the AMI, and a container build's instance.
            workflow_outputs: [
                ("ImageId".to_string(), json!("ami-1")),
                ("InstanceId".to_string(), json!("i-1")),
            ]
            .into_iter()
            .collect(),
        };
        let mut exec = Execution::start(doc, &given, context).expect("parameters bind");
        let mut now = 0;
        let status = loop {
            now += 1000;
            match exec.next(now) {
                Next::RunStep { index, action, .. } if action == "WaitForAction" => {
                    exec.waiting_action(
                        index,
                        kiln_workflow::execution::WaitAction::Resume,
                        Some("ok"),
                        now,
                    )
                    .expect("resume");
                }
                Next::RunStep { index, action, .. } => {
                    let spec = kiln_workflow::actions::lookup(&action).expect("known action");
                    let outputs: serde_json::Map<String, serde_json::Value> = spec
                        .outputs
                        .iter()
                        .map(|o| {
                            (
                                o.to_string(),
                                if *o == "output" {
                                    json!(["out"])
                                } else {
                                    json!(format!("{o}-1"))
                                },
                            )
                        })
                        .collect();
                    exec.step_finished(index, Ok(outputs.into()), now)
                        .expect("finished");
                }
                Next::Done { status, .. } => break status,
                other => panic!("{name}: unexpected {other:?}"),
            }
        };
        assert_eq!(
            status,
            ExecutionStatus::Completed,
            "{name}: {:?}",
            exec.message
        );
    }
}
