//! Every Linux component document of tests/corpus (a copy of ../shared/corpus) validates, except the ones listed with
//! the documented rule they break.

use kiln_toe::document::{parse, Platform};
use std::path::PathBuf;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus")
}

/// Documents Kiln must reject, with the rule each breaks (a fragment of the message).
const REJECTED: &[(&str, &str)] = &[
    (
        "terraform-aws-imagebuilder__example_examplea_component.yaml",
        // semantics.md 1.1: `phases` is a list of phases; this one is a single mapping.
        "phases must be a non-empty list",
    ),
    (
        "aws_imagebuilder_component__test_set-file-encoding.yaml",
        // semantics.md 1.1: "Step names unique within a phase"; the sample (copied from the
        // AWS docs) names two steps SettingFileEncodingProperty.
        "step names are unique in a phase",
    ),
    (
        "aws_imagebuilder_component__test_test.yaml",
        // semantics.md 1.1: parameter and constant names are "unique across parameters and
        // constants"; this one declares `Source` as both. (It also uses the docs' placeholder
        // loop `delimiter: ".,;:\n\t -_"`, which is not one character.)
        "names are unique across parameters and constants",
    ),
];

#[test]
fn linux_corpus_documents_validate() {
    let sources = std::fs::read_to_string(corpus().join("SOURCES.tsv")).expect("SOURCES.tsv");
    let mut checked = 0;
    let mut failures = Vec::new();
    for line in sources.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 7 || cols[5] != "component" || cols[6] != "Linux" {
            continue;
        }
        let file = cols[0];
        let text = std::fs::read_to_string(corpus().join(file)).expect(file);
        let base = file.trim_start_matches("components/");
        let result = parse(&text, Platform::Linux);
        checked += 1;
        match (REJECTED.iter().find(|(f, _)| *f == base), result) {
            (None, Ok(_)) => {}
            (None, Err(e)) => failures.push(format!("{base}: {e}")),
            (Some((_, rule)), Err(e)) if e.to_string().contains(rule) => {}
            (Some((_, rule)), other) => failures.push(format!(
                "{base}: expected rejection `{rule}`, got {other:?}"
            )),
        }
    }
    assert_eq!(checked, 67, "the corpus has 67 Linux component documents");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
