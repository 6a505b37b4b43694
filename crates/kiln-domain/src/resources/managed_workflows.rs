//! The workflows Kiln offers under the `aws` owner, as Image Builder offers Amazon-managed
//! workflows: `arn:aws:imagebuilder:<region>:aws:workflow/<build|test|distribution>/<name>/1.0.0/1`,
//! in every region, read-only (wave 2 contract §1.5). `build-image` is AWS's published document
//! (as the aws-cdk tests copy it) and `test-image` the one terraform-provider-aws reproduces; the
//! others are not published, and Kiln's documents (`test-container`, `distribute-*`, the
//! `build-container` steps) say in their description that Kiln wrote them.
//!
//! They are listed and read (ListWorkflows `owner: Amazon`, GetWorkflow,
//! ListWorkflowBuildVersions), and builds run them by default (the worker's `workflows`
//! module: build-image/test-image or the container pair, then the implicit distribution).

use super::managed::{OWNER, RELEASED};
use super::workflow::{Workflow, WorkflowType};
use crate::arn::Arn;
use crate::version::{SemVer, VersionFilter};

/// The version every managed workflow has.
pub const VERSION: SemVer = SemVer::new(1, 0, 0);

/// `(name, type, document)` of each managed workflow.
pub const DOCUMENTS: [(&str, WorkflowType, &str); 9] = [
    (
        "build-image",
        WorkflowType::Build,
        include_str!("managed_workflows/build-image.yaml"),
    ),
    (
        "express-build-image",
        WorkflowType::Build,
        include_str!("managed_workflows/express-build-image.yaml"),
    ),
    (
        "build-container",
        WorkflowType::Build,
        include_str!("managed_workflows/build-container.yaml"),
    ),
    (
        "express-build-container",
        WorkflowType::Build,
        include_str!("managed_workflows/express-build-container.yaml"),
    ),
    (
        "test-image",
        WorkflowType::Test,
        include_str!("managed_workflows/test-image.yaml"),
    ),
    (
        "express-test-image",
        WorkflowType::Test,
        include_str!("managed_workflows/express-test-image.yaml"),
    ),
    (
        "test-container",
        WorkflowType::Test,
        include_str!("managed_workflows/test-container.yaml"),
    ),
    (
        "distribute-image",
        WorkflowType::Distribution,
        include_str!("managed_workflows/distribute-image.yaml"),
    ),
    (
        "distribute-container",
        WorkflowType::Distribution,
        include_str!("managed_workflows/distribute-container.yaml"),
    ),
];

/// The document's `description:` line (the managed documents keep it on one line).
fn description_of(document: &str) -> Option<String> {
    document
        .lines()
        .find_map(|l| l.strip_prefix("description: "))
        .map(str::to_string)
}

/// Every managed workflow in `region`, in the order of [`DOCUMENTS`].
pub fn all(region: &str) -> Vec<Workflow> {
    DOCUMENTS
        .iter()
        .map(|(name, workflow_type, document)| Workflow {
            arn: Arn::new(region, OWNER, workflow_type.kind(), name)
                .with_version(VERSION)
                .with_build(1),
            name: name.to_string(),
            version: VERSION,
            build: 1,
            workflow_type: *workflow_type,
            description: description_of(document),
            change_description: None,
            parameters: Vec::new(),
            owner: OWNER.to_string(),
            data: document.to_string(),
            kms_key_id: None,
            date_created: RELEASED,
        })
        .collect()
}

/// The managed workflows an ARN of owner `aws` names (its version may be an `x` filter or
/// absent; a build number must be 1): at most one, since each has one version.
pub fn matching(arn: &Arn) -> Vec<Workflow> {
    if arn.account != OWNER {
        return Vec::new();
    }
    let filter = match arn.version.as_deref() {
        None => VersionFilter::ANY,
        Some(v) => match VersionFilter::parse(v) {
            Ok(f) => f,
            Err(_) => return Vec::new(),
        },
    };
    all(&arn.region)
        .into_iter()
        .filter(|w| w.arn.kind == arn.kind && w.arn.name == arn.name)
        .filter(|w| arn.build.is_none_or(|b| b == w.build))
        .filter(|w| filter.newest([(w.version, w.build)]).is_some())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_document_names_itself_and_each_has_a_description() {
        for (name, _, document) in DOCUMENTS {
            assert!(document.starts_with(&format!("name: {name}\n")), "{name}");
            assert!(description_of(document).is_some(), "{name}");
        }
    }

    #[test]
    fn finds_by_type_name_and_version_filter() {
        let p = |s: &str| Arn::parse(s).unwrap();
        let found = matching(&p(
            "arn:aws:imagebuilder:eu-west-1:aws:workflow/build/build-image/x.x.x",
        ));
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].arn.to_string(),
            "arn:aws:imagebuilder:eu-west-1:aws:workflow/build/build-image/1.0.0/1"
        );
        for miss in [
            "arn:aws:imagebuilder:eu-west-1:aws:workflow/test/build-image/x.x.x",
            "arn:aws:imagebuilder:eu-west-1:aws:workflow/build/build-image/2.x.x",
            "arn:aws:imagebuilder:eu-west-1:aws:workflow/build/build-image/1.0.0/2",
            "arn:aws:imagebuilder:eu-west-1:123456789012:workflow/build/build-image/x.x.x",
        ] {
            assert!(matching(&p(miss)).is_empty(), "{miss}");
        }
    }
}
