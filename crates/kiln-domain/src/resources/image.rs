//! Images: the record of one build and the state machine it moves through (semantics.md 5.1).
//!
//! A build moves forward only: PENDING, then BUILDING, TESTING (skipped when image tests are
//! off), DISTRIBUTING, and ends AVAILABLE; at any point before the end it may end FAILED or
//! CANCELLED instead. CREATING and INTEGRATING exist in the API's enum but Kiln has no step that
//! matches them, so a Kiln build never shows them (it may be told to move through them, which
//! is allowed, so records written by other tools stay readable). DEPRECATED, DISABLED and
//! DELETED come later, from lifecycle actions on an AVAILABLE image.
//!
//! [`ImageStatus::can_move_to`] is the whole rule; [`Image::advance`] applies it with a reason
//! and refuses anything else, so a bug that tries to revive a FAILED image or skip back to
//! BUILDING is caught where it happens.

use super::distribution::DistributionConfiguration;
use super::infrastructure::InfrastructureConfiguration;
use super::recipe::{ComponentConfiguration, ContainerRecipe, ImageRecipe, Platform};
use super::{Millis, Resource};
use crate::arn::Arn;
use crate::version::SemVer;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ImageStatus {
    Pending,
    Creating,
    Building,
    Testing,
    Distributing,
    Integrating,
    Available,
    Cancelled,
    Failed,
    Deprecated,
    Deleted,
    Disabled,
}

impl ImageStatus {
    pub const ALL: [ImageStatus; 12] = [
        ImageStatus::Pending,
        ImageStatus::Creating,
        ImageStatus::Building,
        ImageStatus::Testing,
        ImageStatus::Distributing,
        ImageStatus::Integrating,
        ImageStatus::Available,
        ImageStatus::Cancelled,
        ImageStatus::Failed,
        ImageStatus::Deprecated,
        ImageStatus::Deleted,
        ImageStatus::Disabled,
    ];

    /// The API's spelling (`ImageStatus` enum of the model).
    pub fn as_str(self) -> &'static str {
        match self {
            ImageStatus::Pending => "PENDING",
            ImageStatus::Creating => "CREATING",
            ImageStatus::Building => "BUILDING",
            ImageStatus::Testing => "TESTING",
            ImageStatus::Distributing => "DISTRIBUTING",
            ImageStatus::Integrating => "INTEGRATING",
            ImageStatus::Available => "AVAILABLE",
            ImageStatus::Cancelled => "CANCELLED",
            ImageStatus::Failed => "FAILED",
            ImageStatus::Deprecated => "DEPRECATED",
            ImageStatus::Deleted => "DELETED",
            ImageStatus::Disabled => "DISABLED",
        }
    }

    pub fn parse(s: &str) -> Option<ImageStatus> {
        ImageStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Position in the forward order of a build; `None` for the ends and lifecycle states.
    fn build_rank(self) -> Option<u8> {
        Some(match self {
            ImageStatus::Pending => 0,
            ImageStatus::Creating => 1,
            ImageStatus::Building => 2,
            ImageStatus::Testing => 3,
            ImageStatus::Distributing => 4,
            ImageStatus::Integrating => 5,
            _ => return None,
        })
    }

    /// A build in this status is still running (CancelImageCreation applies).
    pub fn in_progress(self) -> bool {
        self.build_rank().is_some()
    }

    /// The build is over: AVAILABLE, FAILED or CANCELLED (or a lifecycle state after them).
    pub fn is_final(self) -> bool {
        !self.in_progress()
    }

    /// Whether a record may move from `self` to `next`.
    pub fn can_move_to(self, next: ImageStatus) -> bool {
        use ImageStatus::*;
        match (self.build_rank(), next) {
            // A running build goes forward, or ends.
            (Some(from), _) => match next.build_rank() {
                Some(to) => to > from,
                None => matches!(next, Available | Failed | Cancelled),
            },
            // Lifecycle actions on a usable image, and deletion of any finished one.
            (None, Deleted) => self != Deleted,
            (None, Deprecated | Disabled) => matches!(self, Available | Deprecated | Disabled),
            (None, Available) => matches!(self, Deprecated | Disabled),
            (None, _) => false,
        }
    }
}

/// Why an image was built (the API's BuildType).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BuildType {
    UserInitiated,
    Scheduled,
    Import,
}

impl BuildType {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildType::UserInitiated => "USER_INITIATED",
            BuildType::Scheduled => "SCHEDULED",
            BuildType::Import => "IMPORT",
        }
    }
}

/// AMI for image recipes, DOCKER for container recipes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageType {
    Ami,
    Docker,
}

impl ImageType {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageType::Ami => "AMI",
            ImageType::Docker => "DOCKER",
        }
    }
}

/// A refused status change: the record keeps its status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("image {arn}: cannot move from {from} to {to}")]
pub struct TransitionError {
    pub arn: String,
    pub from: &'static str,
    pub to: &'static str,
}

/// One status change, kept in the record's history (for logs and for tests that check the
/// order a build went through).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    pub status: ImageStatus,
    pub reason: Option<String>,
    pub at: Millis,
}

/// The record of one image build version (`image/<name>/<x.y.z>/<build>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub arn: Arn,
    pub name: String,
    pub image_type: ImageType,
    pub build_type: BuildType,
    pub status: ImageStatus,
    /// Why the image is in its status (set for FAILED and CANCELLED).
    pub reason: Option<String>,
    pub history: Vec<StatusChange>,
    /// The pipeline that built it, if any.
    pub pipeline_arn: Option<String>,
    /// The recipe (image or container) it was built from, resolved to a build version.
    pub recipe_arn: String,
    pub infrastructure_configuration_arn: String,
    pub distribution_configuration_arn: Option<String>,
    pub image_tests_enabled: bool,
    pub enhanced_image_metadata_enabled: bool,
    pub platform: String,
    pub os_version: Option<String>,
    /// `ami-...` ids, or container image URIs, once distributed.
    pub output_resources: Vec<String>,
    pub owner: String,
    pub date_created: Millis,
    /// What the build runs, fixed when the image is created: later changes to the recipe,
    /// its components or the configurations do not change a build that is under way.
    #[serde(default)]
    pub snapshot: Option<BuildSnapshot>,
    /// Names the build's instances and its log folder (16 hex digits).
    #[serde(default)]
    pub build_id: String,
    /// The pipeline's name, for `sourcePipelineName`.
    #[serde(default)]
    pub pipeline_name: Option<String>,
    /// The OCI image the build produced (manifest digest in Kiln's image store).
    #[serde(default)]
    pub image_digest: Option<String>,
    /// With enhanced metadata: the packages installed in the image.
    #[serde(default)]
    pub packages: Vec<Package>,
    /// A failed build's instance kept for inspection (`terminateInstanceOnFailure: false`).
    #[serde(default)]
    pub kept_instance: Option<String>,
    /// The Image Builder image the recipe's parent (an ARN, possibly with `x` filters) resolved
    /// to when this image was created; `None` for other parent forms or when none matched yet.
    #[serde(default)]
    pub resolved_parent: Option<String>,
}

/// The inputs of a build, copied into the image when it is created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildSnapshot {
    pub recipe: RecipeSnapshot,
    pub infrastructure: InfrastructureConfiguration,
    pub distribution: Option<DistributionConfiguration>,
    /// The recipe's components resolved to builds, in recipe order.
    pub components: Vec<BuildComponent>,
    pub image_tests_timeout_minutes: i32,
}

impl BuildSnapshot {
    pub fn parent_image(&self) -> &str {
        self.recipe.parent_image()
    }

    pub fn working_directory(&self) -> Option<&str> {
        match &self.recipe {
            RecipeSnapshot::Image(r) => r.working_directory.as_deref(),
            RecipeSnapshot::Container(r) => r.working_directory.as_deref(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RecipeSnapshot {
    Image(ImageRecipe),
    Container(ContainerRecipe),
}

impl RecipeSnapshot {
    pub fn parent_image(&self) -> &str {
        match self {
            RecipeSnapshot::Image(r) => &r.parent_image,
            RecipeSnapshot::Container(r) => &r.parent_image,
        }
    }

    pub fn arn(&self) -> &Arn {
        match self {
            RecipeSnapshot::Image(r) => &r.arn,
            RecipeSnapshot::Container(r) => &r.arn,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            RecipeSnapshot::Image(r) => &r.name,
            RecipeSnapshot::Container(r) => &r.name,
        }
    }

    pub fn version(&self) -> SemVer {
        match self {
            RecipeSnapshot::Image(r) => r.version,
            RecipeSnapshot::Container(r) => r.version,
        }
    }

    pub fn components(&self) -> &[ComponentConfiguration] {
        match self {
            RecipeSnapshot::Image(r) => &r.components,
            RecipeSnapshot::Container(r) => &r.components,
        }
    }

    pub fn platform(&self) -> Platform {
        match self {
            RecipeSnapshot::Image(r) => r.platform,
            RecipeSnapshot::Container(r) => r.platform,
        }
    }

    /// AMI for image recipes, DOCKER for container recipes.
    pub fn image_type(&self) -> ImageType {
        match self {
            RecipeSnapshot::Image(_) => ImageType::Ami,
            RecipeSnapshot::Container(_) => ImageType::Docker,
        }
    }
}

/// One component of a build: its document and the recipe's parameter values for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildComponent {
    /// The component build version's ARN.
    pub arn: String,
    pub name: String,
    pub data: String,
    pub parameters: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
}

impl Resource for Image {
    fn arn(&self) -> &Arn {
        &self.arn
    }
}

impl Image {
    /// `ami-0` and the 16 hex digits of the build id: the id an AVAILABLE AMI-type image
    /// answers to (and a recipe's `parentImage` may name).
    pub fn ami_id(&self) -> String {
        format!("ami-0{}", &self.build_id[..self.build_id.len().min(16)])
    }

    /// Moves the image to `next`, recording when and why; refuses a move the state machine does
    /// not allow.
    pub fn advance(
        &mut self,
        next: ImageStatus,
        reason: Option<String>,
        at: Millis,
    ) -> Result<(), TransitionError> {
        if !self.status.can_move_to(next) {
            return Err(TransitionError {
                arn: self.arn.to_string(),
                from: self.status.as_str(),
                to: next.as_str(),
            });
        }
        self.status = next;
        self.reason = reason.clone();
        self.history.push(StatusChange {
            status: next,
            reason,
            at,
        });
        Ok(())
    }
}

/// The statuses a successful build shows, in order, from PENDING to AVAILABLE.
pub fn build_path(tests_enabled: bool) -> Vec<ImageStatus> {
    let mut path = vec![ImageStatus::Pending, ImageStatus::Building];
    if tests_enabled {
        path.push(ImageStatus::Testing);
    }
    path.extend([ImageStatus::Distributing, ImageStatus::Available]);
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arn::ResourceKind;
    use ImageStatus::*;

    #[test]
    fn spelling_round_trips() {
        for s in ImageStatus::ALL {
            assert_eq!(ImageStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(ImageStatus::parse("available"), None);
    }

    #[test]
    fn transitions_table() {
        let allowed: &[(ImageStatus, ImageStatus)] = &[
            (Pending, Building),
            (Pending, Creating),
            (Building, Testing),
            (Building, Distributing),
            (Testing, Distributing),
            (Distributing, Available),
            (Distributing, Integrating),
            (Integrating, Available),
            (Pending, Failed),
            (Building, Failed),
            (Testing, Cancelled),
            (Pending, Cancelled),
            (Available, Deprecated),
            (Deprecated, Available),
            (Available, Disabled),
            (Failed, Deleted),
            (Available, Deleted),
        ];
        let refused: &[(ImageStatus, ImageStatus)] = &[
            (Building, Pending),
            (Testing, Building),
            (Building, Building),
            (Failed, Building),
            (Failed, Available),
            (Cancelled, Pending),
            (Available, Building),
            (Available, Failed),
            (Deleted, Deleted),
            (Deleted, Available),
            (Failed, Deprecated),
            (Building, Deprecated),
            (Building, Deleted),
        ];
        for (from, to) in allowed {
            assert!(
                from.can_move_to(*to),
                "{from:?} -> {to:?} should be allowed"
            );
        }
        for (from, to) in refused {
            assert!(
                !from.can_move_to(*to),
                "{from:?} -> {to:?} should be refused"
            );
        }
        // Every step of the build path is allowed.
        for tests in [true, false] {
            for pair in build_path(tests).windows(2) {
                assert!(pair[0].can_move_to(pair[1]), "{pair:?}");
            }
        }
        assert!(!build_path(false).contains(&Testing));
    }

    #[test]
    fn advance_records_history_and_refuses_bad_moves() {
        let arn = Arn::new("us-east-1", "123456789012", ResourceKind::Image, "img");
        let mut image = Image {
            arn,
            name: "img".into(),
            image_type: ImageType::Ami,
            build_type: BuildType::UserInitiated,
            status: Pending,
            reason: None,
            history: Vec::new(),
            pipeline_arn: None,
            recipe_arn: "r".into(),
            infrastructure_configuration_arn: "i".into(),
            distribution_configuration_arn: None,
            image_tests_enabled: true,
            enhanced_image_metadata_enabled: true,
            platform: "Linux".into(),
            os_version: None,
            output_resources: Vec::new(),
            owner: "123456789012".into(),
            date_created: 0,
            snapshot: None,
            build_id: "0123456789abcdef".into(),
            pipeline_name: None,
            image_digest: None,
            packages: Vec::new(),
            kept_instance: None,
            resolved_parent: None,
        };
        image.advance(Building, None, 1).unwrap();
        image
            .advance(Failed, Some("build/Install: exit status 1".into()), 2)
            .unwrap();
        assert_eq!(image.history.len(), 2);
        let err = image.advance(Available, None, 3).unwrap_err();
        assert_eq!(err.from, "FAILED");
        assert_eq!(err.to, "AVAILABLE");
        assert_eq!(image.status, Failed);
        assert_eq!(
            image.reason.as_deref(),
            Some("build/Install: exit status 1")
        );
    }
}
