//! Components: versioned AWSTOE documents that a recipe installs (build) or runs against the
//! finished image (test).
//!
//! A component is identified by its build-version ARN, `component/<name>/<x.y.z>/<build>`. The
//! caller chooses the name and the semantic version; Kiln numbers the builds of a version from
//! 1 ([`next_build`]). Creating the same name and version again makes a new build unless its
//! content equals the newest build's ([`Component::same_content`]), as the API documents.
//!
//! The document itself is kept verbatim (`data`), because `GetComponent` returns it as written.
//! What Kiln needs from it later (its type and its parameters) is extracted once, at creation,
//! by the API layer, which parses the YAML; the rules about phase names that decide the type
//! and validity live here so that they hold whatever the document's syntax.

use super::{Millis, Resource};
use crate::arn::Arn;
use crate::version::SemVer;
use serde::{Deserialize, Serialize};

/// The only phase of a test component (the phase rules themselves are kiln-toe's: the document
/// validator owns them).
pub const TEST_PHASE: &str = "test";

/// Whether Image Builder uses the component to build the image or only to test it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ComponentType {
    Build,
    Test,
}

impl ComponentType {
    /// The type a document's phases give it. The API reference states the rule: "If the
    /// document contains a single phase named `test`, the component type is `TEST`. Otherwise,
    /// the component type is `BUILD`." So a document with `test` and any other phase (even
    /// `container-host-test`) is a build component whose test phase also runs at test time.
    pub fn from_phases<S: AsRef<str>>(phase_names: &[S]) -> ComponentType {
        match phase_names {
            [only] if only.as_ref() == TEST_PHASE => ComponentType::Test,
            _ => ComponentType::Build,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ComponentType::Build => "BUILD",
            ComponentType::Test => "TEST",
        }
    }
}

/// The lifecycle state of a component version. Kiln creates every component `Active`; the
/// other states exist for resource state updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ComponentStatus {
    Active,
    Deprecated,
    Disabled,
}

impl ComponentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentStatus::Active => "ACTIVE",
            ComponentStatus::Deprecated => "DEPRECATED",
            ComponentStatus::Disabled => "DISABLED",
        }
    }
}

/// A parameter a component or workflow document declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentParameter {
    pub name: String,
    /// As the document spells it (`string`, `integer`, `boolean`, `stringList`).
    pub kind: String,
    /// `None` when the document gives no default: the caller must then supply a value.
    pub default_value: Option<Vec<String>>,
    pub description: Option<String>,
}

impl DocumentParameter {
    pub fn is_required(&self) -> bool {
        self.default_value.is_none()
    }
}

/// One build version of a component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Component {
    /// The build-version ARN, `.../component/<name>/<x.y.z>/<build>`.
    pub arn: Arn,
    /// The name as the caller wrote it for this build (the ARN holds the normalised form).
    pub name: String,
    pub version: SemVer,
    pub build: u32,
    pub description: Option<String>,
    pub change_description: Option<String>,
    pub component_type: ComponentType,
    /// `Linux`, `Windows` or `macOS`, as the API spells it.
    pub platform: String,
    pub supported_os_versions: Vec<String>,
    pub parameters: Vec<DocumentParameter>,
    /// The owning account's ID.
    pub owner: String,
    /// The YAML document exactly as given.
    pub data: String,
    pub kms_key_id: Option<String>,
    pub status: ComponentStatus,
    pub date_created: Millis,
}

impl Component {
    /// The version ARN this build belongs to, `.../component/<name>/<x.y.z>`.
    pub fn version_arn(&self) -> Arn {
        self.arn.without_build()
    }

    /// Whether `other` would be the same build: same document and same settings. Tags and
    /// the display name do not count, since neither changes what the component does.
    pub fn same_content(&self, other: &Component) -> bool {
        self.data == other.data
            && self.description == other.description
            && self.change_description == other.change_description
            && self.platform == other.platform
            && self.supported_os_versions == other.supported_os_versions
            && self.kms_key_id == other.kms_key_id
    }
}

impl Resource for Component {
    fn arn(&self) -> &Arn {
        &self.arn
    }
}

/// The build number for a new build of a version whose existing builds are `existing`: one more
/// than the highest, starting at 1. A deleted newest build's number is therefore given again;
/// nothing can still refer to it, since builds that are referenced cannot be deleted.
pub fn next_build(existing: impl IntoIterator<Item = u32>) -> Option<u32> {
    match existing.into_iter().max() {
        None => Some(1),
        Some(highest) => highest.checked_add(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arn::ResourceKind;

    #[test]
    fn type_is_test_only_for_a_single_test_phase() {
        let cases: &[(&[&str], ComponentType)] = &[
            (&["test"], ComponentType::Test),
            (&["build"], ComponentType::Build),
            (&["validate"], ComponentType::Build),
            (&["build", "validate"], ComponentType::Build),
            (&["build", "validate", "test"], ComponentType::Build),
            (&["test", "container-host-test"], ComponentType::Build),
            (&["container-host-test"], ComponentType::Build),
        ];
        for (phases, expected) in cases {
            assert_eq!(ComponentType::from_phases(phases), *expected, "{phases:?}");
        }
    }

    #[test]
    fn builds_count_from_one() {
        assert_eq!(next_build([]), Some(1));
        assert_eq!(next_build([1, 3, 2]), Some(4));
        assert_eq!(next_build([u32::MAX]), None);
    }

    fn sample() -> Component {
        let version = SemVer::new(1, 2, 3);
        Component {
            arn: Arn::new("us-east-1", "123456789012", ResourceKind::Component, "c")
                .with_version(version)
                .with_build(1),
            name: "C".into(),
            version,
            build: 1,
            description: None,
            change_description: None,
            component_type: ComponentType::Build,
            platform: "Linux".into(),
            supported_os_versions: vec![],
            parameters: vec![],
            owner: "123456789012".into(),
            data: "schemaVersion: 1.0".into(),
            kms_key_id: None,
            status: ComponentStatus::Active,
            date_created: 0,
        }
    }

    #[test]
    fn content_ignores_identity_and_display_name() {
        let a = sample();
        let mut b = sample();
        b.name = "c".into();
        b.build = 2;
        b.date_created = 5;
        assert!(a.same_content(&b));
        b.data.push_str("\n# changed");
        assert!(!a.same_content(&b));
        assert_eq!(
            a.version_arn().to_string(),
            "arn:aws:imagebuilder:us-east-1:123456789012:component/c/1.2.3"
        );
    }
}
