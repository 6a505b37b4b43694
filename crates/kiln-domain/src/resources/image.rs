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

/// The repository a scanned container image's copy goes to when `ecrConfiguration` names none
/// (AWS creates one of this name).
pub const DEFAULT_SCAN_REPOSITORY: &str = "image-builder-image-scanning-repository";

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
    /// A container image pushed to registries (`--ecr-registry`): one entry per Region, the
    /// `outputResources.containers` of the API. Empty for images kept in the local store only.
    #[serde(default)]
    pub containers: Vec<ContainerOutput>,
    /// The AMIs distribution made of an AMI-type image, one per Region and account (the API's
    /// `outputResources.amis`). Records written before distribution made AMIs have none and
    /// answer with `output_resources`.
    #[serde(default)]
    pub amis: Vec<super::ami::AmiOutput>,
    /// Where and why the build failed (the API's `state.failureContext`), when it did.
    #[serde(default)]
    pub failure: Option<FailureContext>,
    /// The stage a FAILED or CANCELLED build reached with its image intact: RetryImage resumes
    /// there (DISTRIBUTING) instead of building again.
    #[serde(default)]
    pub resume_at: Option<ImageStatus>,
    /// The build whose contents this image distributes, when it is not its own (an image
    /// DistributeImage made to track a distribution of another image's AMI).
    #[serde(default)]
    pub distributes: Option<BuildRef>,
    /// An image made by ImportDiskImage or ImportVmImage (`buildType` IMPORT): the disk the
    /// worker imports instead of building; such an image has no build snapshot.
    #[serde(default)]
    pub import: Option<super::import::ImageImport>,
    /// The workflows the build runs instead of the managed defaults (CreateImage's or the
    /// pipeline's `workflows`, as given: `x` filters resolve when the build starts); `None`
    /// runs build-image/test-image (or the container pair) and the implicit distribution.
    #[serde(default)]
    pub workflows: Option<Vec<super::pipeline::PipelineWorkflow>>,
    /// The `executionRole` the workflows run under (echoed by GetImage).
    #[serde(default)]
    pub execution_role: Option<String>,
    /// `imageScanningConfiguration` (CreateImage's or the pipeline's), echoed by GetImage;
    /// with `enabled` the build scans the image (contract §2).
    #[serde(default)]
    pub scanning: Option<super::pipeline::ImageScanning>,
    /// `scanState`: where the image's vulnerability scan is.
    #[serde(default)]
    pub scan_state: Option<super::scan::ScanState>,
    /// The last lifecycle execution that acted on the image (`lce-...`), answered by GetImage.
    #[serde(default)]
    pub lifecycle_execution_id: Option<String>,
    /// When the image becomes (or became) DEPRECATED (`deprecationTime`); a future time is a
    /// StartResourceStateUpdate with `updateAt` that has not applied yet.
    #[serde(default)]
    pub deprecation_time: Option<super::Millis>,
}

/// One build's contents: the image that made them and its build id (the store tag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRef {
    pub image: String,
    pub build_id: String,
}

/// Where a build failed, for the API's `ImageFailureContext`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureContext {
    /// The status the image was in when it failed.
    pub image_status: ImageStatus,
    pub failed_step: Option<String>,
    pub distribution: Option<DistributionFailure>,
    /// The workflow execution that failed (`wf-...`), its workflow and failed step's ids.
    #[serde(default)]
    pub workflow_execution_id: Option<String>,
    #[serde(default)]
    pub workflow_arn: Option<String>,
    #[serde(default)]
    pub step_execution_id: Option<String>,
    /// The component step that failed an ExecuteComponents step.
    #[serde(default)]
    pub component: Option<ComponentFailure>,
}

/// Which component step failed (the API's `ComponentFailureContext`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentFailure {
    pub component_arn: String,
    /// `build`, `validate` or `test`.
    pub phase_name: String,
    pub step_name: String,
    pub action: String,
    /// At most 1024 characters (the component log has the rest).
    pub error_message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistributionFailure {
    pub error_message: String,
    pub region_failures: Vec<RegionFailure>,
}

/// One Region (and account) where distribution failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionFailure {
    pub region: String,
    /// `FAILED`, `CANCELLED` or `TIMED_OUT`.
    pub status: String,
    /// The post-copy step (`PUT_SSM_PARAMETERS`, `EXPORT_AMI`...); `None` when the copy failed.
    pub image_configuration_step: Option<String>,
    pub error_message: String,
    pub target_account_id: Option<String>,
}

/// A container image in one Region's registry: its URIs by tag and by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerOutput {
    pub region: String,
    pub image_uris: Vec<String>,
}

/// Where a container image goes when it is distributed: one repository in one Region, with
/// the tags it gets there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerDestination {
    pub region: String,
    pub repository: String,
    /// The default `<version>-<build>` tag first, then the entry's `containerTags` (each once).
    pub tags: Vec<String>,
    /// The request member it comes from, for messages.
    pub source: String,
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
    /// A PENDING AMI image of the ARN's account with nothing else set (no recipe, build or
    /// outputs): what fixtures start from, `Image { status, .., ..Image::blank(arn) }`.
    pub fn blank(arn: Arn) -> Image {
        Image {
            name: arn.name.clone(),
            image_type: ImageType::Ami,
            build_type: BuildType::UserInitiated,
            status: ImageStatus::Pending,
            reason: None,
            history: Vec::new(),
            pipeline_arn: None,
            recipe_arn: String::new(),
            infrastructure_configuration_arn: String::new(),
            distribution_configuration_arn: None,
            image_tests_enabled: true,
            enhanced_image_metadata_enabled: true,
            platform: "Linux".into(),
            os_version: None,
            output_resources: Vec::new(),
            owner: arn.account.clone(),
            date_created: 0,
            snapshot: None,
            build_id: String::new(),
            pipeline_name: None,
            image_digest: None,
            packages: Vec::new(),
            kept_instance: None,
            resolved_parent: None,
            containers: Vec::new(),
            amis: Vec::new(),
            failure: None,
            resume_at: None,
            distributes: None,
            import: None,
            workflows: None,
            execution_role: None,
            scanning: None,
            scan_state: None,
            lifecycle_execution_id: None,
            deprecation_time: None,
            arn,
        }
    }

    /// The tag every pushed container image gets: `<semantic version>-<build number>`, as
    /// AWS's image URIs show (`repo:1.0.0-1`).
    pub fn default_container_tag(&self) -> String {
        format!(
            "{}-{}",
            self.arn.version.as_deref().unwrap_or("0.0.0"),
            self.arn.build.unwrap_or(0)
        )
    }

    /// Where a container image goes, as AWS decides it (User Guide, "Create a container image
    /// pipeline from the AWS CLI"): with a distribution configuration, every entry that has a
    /// `containerDistributionConfiguration` names the repository and tags of its Region;
    /// without one, the container recipe's `targetRepository` in the Region of the build. A
    /// distribution configuration with no container entry (AMI entries only) says nothing
    /// about containers, so the recipe's `targetRepository` applies then too. Empty for AMI
    /// images.
    /// Where the copy of a container image that a scan looks at goes
    /// (`imageScanningConfiguration.ecrConfiguration`): its repository (default
    /// `image-builder-image-scanning-repository`, as AWS's) in the build's Region, with its
    /// `containerTags` (default the `<version>-<build>` tag). `None` for AMI images and when
    /// scanning is off.
    pub fn scan_copy_destination(&self) -> Option<ContainerDestination> {
        let scanning = self.scanning.as_ref().filter(|s| s.is_on())?;
        if self.image_type != ImageType::Docker {
            return None;
        }
        let tags = match scanning.ecr_container_tags.as_deref() {
            Some(tags) if !tags.is_empty() => tags.to_vec(),
            _ => vec![self.default_container_tag()],
        };
        Some(ContainerDestination {
            region: self.arn.region.clone(),
            repository: scanning
                .ecr_repository_name
                .clone()
                .unwrap_or_else(|| DEFAULT_SCAN_REPOSITORY.to_string()),
            tags,
            source: "imageScanningConfiguration.ecrConfiguration".to_string(),
        })
    }

    pub fn container_destinations(&self) -> Vec<ContainerDestination> {
        let Some(snapshot) = &self.snapshot else {
            return Vec::new();
        };
        let RecipeSnapshot::Container(recipe) = &snapshot.recipe else {
            return Vec::new();
        };
        let default_tag = self.default_container_tag();
        let tags_with = |extra: &[String]| {
            let mut tags = vec![default_tag.clone()];
            for tag in extra {
                if !tags.contains(tag) {
                    tags.push(tag.clone());
                }
            }
            tags
        };
        let entries: Vec<ContainerDestination> = snapshot
            .distribution
            .iter()
            .flat_map(|d| d.distributions.iter().enumerate())
            .filter_map(|(i, d)| {
                let c = d.container_distribution_configuration.as_ref()?;
                Some(ContainerDestination {
                    region: d.region.clone(),
                    repository: c.target_repository.repository_name.clone(),
                    tags: tags_with(c.container_tags.as_deref().unwrap_or_default()),
                    source: format!(
                        "distributionConfigurationArn: distributions[{i}].containerDistributionConfiguration"
                    ),
                })
            })
            .collect();
        if !entries.is_empty() {
            return entries;
        }
        vec![ContainerDestination {
            region: self.arn.region.clone(),
            repository: recipe.target_repository.repository_name.clone(),
            tags: tags_with(&[]),
            source: "containerRecipeArn: the recipe's targetRepository".to_string(),
        }]
    }

    /// `ami-0` and the 16 hex digits of the build id: the id an AVAILABLE AMI-type image
    /// answers to (and a recipe's `parentImage` may name).
    pub fn ami_id(&self) -> String {
        format!("ami-0{}", &self.build_id[..self.build_id.len().min(16)])
    }

    /// The build whose contents this image has: its own, or the one it distributes.
    pub fn contents(&self) -> BuildRef {
        self.distributes.clone().unwrap_or_else(|| BuildRef {
            image: self.arn.to_string(),
            build_id: self.build_id.clone(),
        })
    }

    /// RetryImage: a FAILED or CANCELLED AMI image goes back to PENDING in place, keeping
    /// where it may resume ([`Image::resume_at`]); its failure is forgotten.
    pub fn retry(&mut self, at: Millis) -> Result<(), String> {
        if self.image_type != ImageType::Ami {
            return Err("RetryImage supports AMI images only; this is a container image".into());
        }
        if !matches!(self.status, ImageStatus::Failed | ImageStatus::Cancelled) {
            return Err(format!(
                "only a FAILED or CANCELLED image can be retried; this one is {}",
                self.status.as_str()
            ));
        }
        self.status = ImageStatus::Pending;
        self.reason = None;
        self.failure = None;
        self.kept_instance = None;
        self.history.push(StatusChange {
            status: ImageStatus::Pending,
            reason: Some("RetryImage".to_string()),
            at,
        });
        Ok(())
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
    use crate::resources::distribution::Distribution;
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

    fn test_image(arn: Arn) -> Image {
        Image {
            name: "img".into(),
            recipe_arn: "r".into(),
            infrastructure_configuration_arn: "i".into(),
            build_id: "0123456789abcdef".into(),
            ..Image::blank(arn)
        }
    }

    #[test]
    fn advance_records_history_and_refuses_bad_moves() {
        let arn = Arn::new("us-east-1", "123456789012", ResourceKind::Image, "img");
        let mut image = test_image(arn);
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

    /// A container image 1.2.0/3 of a recipe whose targetRepository is `recipe-repo`, built in
    /// us-east-1 with `distributions`, if any.
    fn container_image(distributions: Option<Vec<Distribution>>) -> Image {
        use crate::resources::recipe::TargetRepository as RecipeRepository;
        use std::collections::BTreeMap;
        let arn = Arn::new("us-east-1", "123456789012", ResourceKind::Image, "app")
            .with_version("1.2.0")
            .with_build(3);
        let recipe_arn = Arn::new(
            "us-east-1",
            "123456789012",
            ResourceKind::ContainerRecipe,
            "app",
        )
        .with_version("1.2.0");
        let mut image = test_image(arn);
        image.image_type = ImageType::Docker;
        image.snapshot = Some(BuildSnapshot {
            recipe: RecipeSnapshot::Container(ContainerRecipe {
                arn: recipe_arn,
                name: "app".into(),
                version: SemVer::parse("1.2.0").unwrap(),
                description: None,
                container_type: "DOCKER".into(),
                platform: Platform::Linux,
                parent_image: "busybox".into(),
                components: Vec::new(),
                dockerfile_template_data: String::new(),
                instance_configuration: None,
                image_os_version_override: None,
                target_repository: RecipeRepository {
                    service: "ECR".into(),
                    repository_name: "recipe-repo".into(),
                },
                kms_key_id: None,
                working_directory: None,
                date_created: 0,
            }),
            infrastructure: InfrastructureConfiguration {
                arn: Arn::new(
                    "us-east-1",
                    "123456789012",
                    ResourceKind::InfrastructureConfiguration,
                    "i",
                ),
                name: "i".into(),
                description: None,
                instance_types: Vec::new(),
                instance_profile_name: "p".into(),
                security_group_ids: Vec::new(),
                subnet_id: None,
                logging: None,
                key_pair: None,
                terminate_instance_on_failure: true,
                terminate_instance_on_completion: None,
                sns_topic_arn: None,
                resource_tags: BTreeMap::new(),
                instance_metadata_options: None,
                placement: None,
                parent_instance: None,
                date_created: 0,
                date_updated: None,
            },
            distribution: distributions.map(|distributions| DistributionConfiguration {
                arn: Arn::new(
                    "us-east-1",
                    "123456789012",
                    ResourceKind::DistributionConfiguration,
                    "d",
                ),
                name: "d".into(),
                description: None,
                distributions,
                date_created: 0,
                date_updated: None,
            }),
            components: Vec::new(),
            image_tests_timeout_minutes: 720,
        });
        image
    }

    fn container_entry(region: &str, repository: &str, tags: Option<&[&str]>) -> Distribution {
        use crate::resources::distribution::{
            ContainerDistribution, RepositoryService, TargetRepository,
        };
        Distribution {
            region: region.into(),
            container_distribution_configuration: Some(ContainerDistribution {
                description: None,
                container_tags: tags.map(|t| t.iter().map(|s| s.to_string()).collect()),
                target_repository: TargetRepository {
                    service: RepositoryService::Ecr,
                    repository_name: repository.into(),
                },
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_container_image_goes_where_its_distribution_or_its_recipe_says() {
        use crate::resources::distribution::AmiDistribution;
        let destinations = |d: Option<Vec<Distribution>>| -> Vec<(String, String, Vec<String>)> {
            container_image(d)
                .container_destinations()
                .into_iter()
                .map(|d| (d.region, d.repository, d.tags))
                .collect()
        };
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // No distribution configuration: the recipe's repository, in the build's Region.
        assert_eq!(
            destinations(None),
            vec![("us-east-1".into(), "recipe-repo".into(), s(&["1.2.0-3"]))]
        );
        // Every container entry, each with the default tag first and its own tags once.
        let ami = Distribution {
            region: "eu-west-1".into(),
            ami_distribution_configuration: Some(AmiDistribution::default()),
            ..Default::default()
        };
        assert_eq!(
            destinations(Some(vec![
                container_entry(
                    "us-west-2",
                    "team/west",
                    Some(&["latest", "1.2.0-3", "west"])
                ),
                ami.clone(),
                container_entry("us-east-1", "east", None),
            ])),
            vec![
                (
                    "us-west-2".into(),
                    "team/west".into(),
                    s(&["1.2.0-3", "latest", "west"])
                ),
                ("us-east-1".into(), "east".into(), s(&["1.2.0-3"])),
            ]
        );
        // A distribution with AMI entries only says nothing of containers: the recipe's.
        assert_eq!(
            destinations(Some(vec![ami])),
            vec![("us-east-1".into(), "recipe-repo".into(), s(&["1.2.0-3"]))]
        );
        // AMI images go to no repository.
        let mut image = container_image(None);
        if let Some(snapshot) = image.snapshot.as_mut() {
            snapshot.recipe = RecipeSnapshot::Image(ImageRecipe {
                arn: snapshot.recipe.arn().clone(),
                name: "app".into(),
                version: SemVer::parse("1.2.0").unwrap(),
                description: None,
                platform: Platform::Linux,
                parent_image: "busybox".into(),
                components: Vec::new(),
                block_device_mappings: Vec::new(),
                working_directory: None,
                additional_instance_configuration: None,
                ami_tags: Default::default(),
                ami_watermarks: Vec::new(),
                date_created: 0,
            });
        }
        assert!(image.container_destinations().is_empty());
    }
}
