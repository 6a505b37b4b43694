//! Image recipes and container recipes: what an image is built from (a parent image), what is
//! installed on it (components, in order), and the settings of the build.
//!
//! A recipe is immutable: a change is a new version. Its ARN is
//! `.../image-recipe/<normalised name>/<major>.<minor>.<patch>` (or `container-recipe`); recipes
//! have no build numbers. The records keep the component references exactly as the caller wrote
//! them (a reference may be an `x` filter), so Get answers what was sent; the API layer records
//! storage references to the component builds those resolved to, so that a component in use
//! cannot be deleted.
//!
//! The checks here are the documented rules that need no storage:
//!
//! - each component appears once in a recipe, and each of its parameters is set once;
//! - a component parameter without a default must be set, and only declared parameters may be
//!   ([`check_component_parameters`]);
//! - the parent image is stored verbatim, but if it is an Image Builder ARN it must name an image
//!   ([`ParentImage::classify`]);
//! - the platform of an image recipe follows its components ([`image_recipe_platform`]);
//!   container recipes take `platformOverride`, Linux or Windows only
//!   ([`container_recipe_platform`]);
//! - block device mappings and AMI watermarks follow the documented EBS and naming rules.

use super::{Millis, Resource};
use crate::arn::{Arn, ResourceKind};
use crate::error::DomainError;
use crate::version::SemVer;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The default quota of build and test components in one recipe ("a maximum of 20 build and test
/// components in any combination, by default").
pub const MAX_COMPONENTS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Platform {
    Windows,
    Linux,
    #[serde(rename = "macOS")]
    MacOs,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Windows => "Windows",
            Platform::Linux => "Linux",
            Platform::MacOs => "macOS",
        }
    }

    /// Reads the API's spelling (`Windows`, `Linux`, `macOS`).
    pub fn parse(s: &str) -> Option<Platform> {
        [Platform::Windows, Platform::Linux, Platform::MacOs]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// A component in a recipe, as the caller referenced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentConfiguration {
    pub component_arn: String,
    pub parameters: Vec<ComponentParameter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentParameter {
    pub name: String,
    pub value: Vec<String>,
}

/// A parameter a component document declares; one without a default must be set by recipes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredParameter {
    pub name: String,
    pub has_default: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDeviceMapping {
    pub device_name: Option<String>,
    pub ebs: Option<EbsSettings>,
    pub virtual_name: Option<String>,
    /// `Some("")` removes the device from the parent image.
    pub no_device: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EbsSettings {
    pub encrypted: Option<bool>,
    pub delete_on_termination: Option<bool>,
    pub iops: Option<i32>,
    pub kms_key_id: Option<String>,
    pub snapshot_id: Option<String>,
    pub volume_size: Option<i32>,
    /// The EBS volume type as written on the wire (`gp3`, `io2`, ...).
    pub volume_type: Option<String>,
    pub throughput: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdditionalInstanceConfiguration {
    pub systems_manager_agent: Option<SystemsManagerAgent>,
    pub user_data_override: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemsManagerAgent {
    pub uninstall_after_build: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecipe {
    pub arn: Arn,
    /// The name as the caller wrote it (the ARN holds the normalised form).
    pub name: String,
    pub version: SemVer,
    pub description: Option<String>,
    pub platform: Platform,
    pub parent_image: String,
    pub components: Vec<ComponentConfiguration>,
    pub block_device_mappings: Vec<BlockDeviceMapping>,
    pub working_directory: Option<String>,
    pub additional_instance_configuration: Option<AdditionalInstanceConfiguration>,
    pub ami_tags: BTreeMap<String, String>,
    pub ami_watermarks: Vec<String>,
    pub date_created: Millis,
}

impl Resource for ImageRecipe {
    fn arn(&self) -> &Arn {
        &self.arn
    }
}

/// Where a container image is pushed. ECR is the only service the API knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRepository {
    pub service: String,
    pub repository_name: String,
}

/// The instance that builds and tests a container image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInstance {
    pub image: Option<String>,
    pub block_device_mappings: Vec<BlockDeviceMapping>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecipe {
    pub arn: Arn,
    pub name: String,
    pub version: SemVer,
    pub description: Option<String>,
    /// `DOCKER`, the only container type.
    pub container_type: String,
    pub platform: Platform,
    pub parent_image: String,
    pub components: Vec<ComponentConfiguration>,
    pub dockerfile_template_data: String,
    pub instance_configuration: Option<ContainerInstance>,
    /// Stored for the builds; the API's `ContainerRecipe` shape has no member to return it in.
    pub image_os_version_override: Option<String>,
    pub target_repository: TargetRepository,
    pub kms_key_id: Option<String>,
    pub working_directory: Option<String>,
    pub date_created: Millis,
}

impl Resource for ContainerRecipe {
    fn arn(&self) -> &Arn {
        &self.arn
    }
}

/// What a `parentImage` string names. Only Image Builder ARNs can be told apart without asking
/// EC2, SSM or a registry; everything else (AMI IDs, `ssm:` parameters, Marketplace product IDs,
/// container image URIs) is kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParentImage {
    ImageBuilderImage(Arn),
    Other,
}

impl ParentImage {
    pub fn classify(parent_image: &str) -> Result<ParentImage, DomainError> {
        const FIELD: &str = "parentImage";
        if !(parent_image.starts_with("arn:") && parent_image.contains(":imagebuilder:")) {
            return Ok(ParentImage::Other);
        }
        let arn = Arn::parse(parent_image).map_err(|e| match e {
            DomainError::Invalid { message, .. } | DomainError::InvalidVersion { message, .. } => {
                DomainError::invalid(FIELD, message)
            }
        })?;
        if arn.kind != ResourceKind::Image {
            return Err(DomainError::invalid(
                FIELD,
                format!(
                    "'{parent_image}' is an Image Builder {} ARN; a parent image ARN must name an image (…:image/<name>/<version>)",
                    arn.kind.label()
                ),
            ));
        }
        Ok(ParentImage::ImageBuilderImage(arn))
    }
}

/// The platform of an image recipe. Image Builder takes it from the parent image; Kiln cannot
/// inspect AMIs, so it uses, in order:
///
/// 1. the platform of the recipe's components (they must all agree; components whose platform
///    is unknown are skipped),
/// 2. for an Amazon-managed parent image ARN, the OS its name starts with (`windows-…`,
///    `macos-…`),
/// 3. Linux.
///
/// `component_platforms` holds each component's platform, in recipe order.
pub fn image_recipe_platform(
    component_platforms: &[Option<Platform>],
    parent: &ParentImage,
) -> Result<Platform, DomainError> {
    if let Some(platform) = common_component_platform(component_platforms)? {
        return Ok(platform);
    }
    if let ParentImage::ImageBuilderImage(arn) = parent {
        if arn.name.starts_with("windows") {
            return Ok(Platform::Windows);
        }
        if arn.name.starts_with("macos") {
            return Ok(Platform::MacOs);
        }
    }
    Ok(Platform::Linux)
}

/// The one platform all components with a known platform share, or `None` when none is known.
fn common_component_platform(
    component_platforms: &[Option<Platform>],
) -> Result<Option<Platform>, DomainError> {
    let mut first: Option<(usize, Platform)> = None;
    for (i, platform) in component_platforms.iter().enumerate() {
        let Some(platform) = *platform else { continue };
        match first {
            None => first = Some((i, platform)),
            Some((j, expected)) if expected != platform => {
                return Err(DomainError::invalid(
                    format!("components[{i}].componentArn"),
                    format!(
                        "the component is for {}, but components[{j}] is for {}; all components of a recipe must be for the same platform",
                        platform.as_str(),
                        expected.as_str()
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(first.map(|(_, p)| p))
}

/// The platform of a container recipe: `platformOverride`, else Linux. Container recipes
/// support only Linux and Windows, and an Image Builder parent image brings its own platform,
/// so an override is refused with one. Components must be for the same platform.
pub fn container_recipe_platform(
    platform_override: Option<Platform>,
    parent: &ParentImage,
    component_platforms: &[Option<Platform>],
) -> Result<Platform, DomainError> {
    const FIELD: &str = "platformOverride";
    if let Some(platform) = platform_override {
        if platform == Platform::MacOs {
            return Err(DomainError::invalid(
                FIELD,
                "container recipes support only the Linux and Windows platforms",
            ));
        }
        if matches!(parent, ParentImage::ImageBuilderImage(_)) {
            return Err(DomainError::invalid(
                FIELD,
                "not allowed when parentImage is an Image Builder image: the platform comes from that image",
            ));
        }
    }
    let platform = platform_override.unwrap_or(Platform::Linux);
    for (i, component) in component_platforms.iter().enumerate() {
        if let Some(component) = *component {
            if component != platform {
                return Err(DomainError::invalid(
                    format!("components[{i}].componentArn"),
                    format!(
                        "the component is for {}, but the recipe builds a {} container",
                        component.as_str(),
                        platform.as_str()
                    ),
                ));
            }
        }
    }
    Ok(platform)
}

/// The component's identity without its version: the same component may not appear twice in a
/// recipe, whichever versions the references select.
fn component_identity(arn: &str) -> String {
    match Arn::parse(arn) {
        Ok(parsed) => format!(
            "{}:{}:{}:{}",
            parsed.partition, parsed.region, parsed.account, parsed.name
        ),
        Err(_) => arn.to_string(),
    }
}

/// "You can specify each component only one time in a recipe", and each parameter once.
pub fn check_component_list(components: &[ComponentConfiguration]) -> Result<(), DomainError> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, component) in components.iter().enumerate() {
        let identity = component_identity(&component.component_arn);
        if let Some(first) = seen.insert(identity, i) {
            return Err(DomainError::invalid(
                format!("components[{i}].componentArn"),
                format!(
                    "the component '{}' is already in the recipe as components[{first}]; each component may appear only once",
                    component.component_arn
                ),
            ));
        }
        let mut names = BTreeSet::new();
        for (j, parameter) in component.parameters.iter().enumerate() {
            if !names.insert(parameter.name.as_str()) {
                return Err(DomainError::invalid(
                    format!("components[{i}].parameters[{j}].name"),
                    format!("the parameter '{}' is set more than once", parameter.name),
                ));
            }
        }
    }
    Ok(())
}

/// The parameters a recipe sets for component `index` against those its document declares:
/// only declared parameters may be set, and every parameter without a default must be.
pub fn check_component_parameters(
    index: usize,
    given: &[ComponentParameter],
    declared: &[DeclaredParameter],
) -> Result<(), DomainError> {
    for (j, parameter) in given.iter().enumerate() {
        if !declared.iter().any(|d| d.name == parameter.name) {
            let known: Vec<&str> = declared.iter().map(|d| d.name.as_str()).collect();
            let hint = if known.is_empty() {
                "the component declares no parameters".to_string()
            } else {
                format!("the component declares: {}", known.join(", "))
            };
            return Err(DomainError::invalid(
                format!("components[{index}].parameters[{j}].name"),
                format!(
                    "the component has no parameter '{}' ({hint})",
                    parameter.name
                ),
            ));
        }
    }
    let missing: Vec<&str> = declared
        .iter()
        .filter(|d| !d.has_default && !given.iter().any(|g| g.name == d.name))
        .map(|d| d.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(DomainError::invalid(
            format!("components[{index}].parameters"),
            format!(
                "set a value for every parameter without a default; missing: {}",
                missing.join(", ")
            ),
        ));
    }
    Ok(())
}

/// EBS rules the API documents, and the ones EC2 enforces on a mapping:
///
/// - a mapping is one of an EBS volume, an instance store (`virtualName`), or a removal
///   (`noDevice`);
/// - a device name is mapped once;
/// - `iops` is required for `io1` and `io2` volumes;
/// - `throughput` is for `gp3` volumes only (a mapping that keeps the parent's volume type may
///   set it, since that type is not known here).
pub fn check_block_device_mappings(
    field: &str,
    mappings: &[BlockDeviceMapping],
) -> Result<(), DomainError> {
    let mut devices = BTreeSet::new();
    for (i, mapping) in mappings.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let kinds = [
            mapping.ebs.is_some(),
            mapping.virtual_name.is_some(),
            mapping.no_device.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() > 1 {
            return Err(DomainError::invalid(
                at,
                "give only one of ebs, virtualName and noDevice",
            ));
        }
        if let Some(device) = &mapping.device_name {
            if !devices.insert(device.as_str()) {
                return Err(DomainError::invalid(
                    format!("{at}.deviceName"),
                    format!("the device '{device}' is mapped more than once"),
                ));
            }
        }
        if let Some(ebs) = &mapping.ebs {
            check_ebs(&format!("{at}.ebs"), ebs)?;
        }
    }
    Ok(())
}

fn check_ebs(at: &str, ebs: &EbsSettings) -> Result<(), DomainError> {
    let volume_type = ebs.volume_type.as_deref();
    if matches!(volume_type, Some("io1" | "io2")) && ebs.iops.is_none() {
        return Err(DomainError::invalid(
            format!("{at}.iops"),
            format!("required for {} volumes", volume_type.unwrap_or_default()),
        ));
    }
    if let (Some(_), Some(other)) = (ebs.throughput, volume_type) {
        if other != "gp3" {
            return Err(DomainError::invalid(
                format!("{at}.throughput"),
                format!("only gp3 volumes have a throughput setting, not {other}"),
            ));
        }
    }
    Ok(())
}

/// "The recipe does not allow duplicate names" (names are case-sensitive).
pub fn check_ami_watermarks(watermarks: &[String]) -> Result<(), DomainError> {
    let mut seen = BTreeSet::new();
    for (i, name) in watermarks.iter().enumerate() {
        if !seen.insert(name.as_str()) {
            return Err(DomainError::invalid(
                format!("amiWatermarks[{i}]"),
                format!("the watermark '{name}' is listed more than once"),
            ));
        }
    }
    Ok(())
}

/// The Systems Manager agent settings "apply to Linux and macOS build instances only. Requests
/// that set it for a recipe with a Windows base image are rejected."
pub fn check_additional_instance_configuration(
    config: Option<&AdditionalInstanceConfiguration>,
    platform: Platform,
) -> Result<(), DomainError> {
    let sets_agent = config.is_some_and(|c| c.systems_manager_agent.is_some());
    if sets_agent && platform == Platform::Windows {
        return Err(DomainError::invalid(
            "additionalInstanceConfiguration.systemsManagerAgent",
            "applies to Linux and macOS build instances only, and this recipe is for Windows",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(arn: &str, params: &[&str]) -> ComponentConfiguration {
        ComponentConfiguration {
            component_arn: arn.to_string(),
            parameters: params
                .iter()
                .map(|p| ComponentParameter {
                    name: p.to_string(),
                    value: vec!["v".to_string()],
                })
                .collect(),
        }
    }

    fn message(e: DomainError) -> String {
        e.to_string()
    }

    const C1: &str = "arn:aws:imagebuilder:us-east-1:123456789012:component/one/1.0.0/1";
    const C1_OTHER_VERSION: &str =
        "arn:aws:imagebuilder:us-east-1:123456789012:component/one/2.x.x";
    const C2: &str = "arn:aws:imagebuilder:us-east-1:123456789012:component/two/x.x.x";

    #[test]
    fn platform_spelling() {
        for p in [Platform::Windows, Platform::Linux, Platform::MacOs] {
            assert_eq!(Platform::parse(p.as_str()), Some(p));
        }
        assert_eq!(Platform::parse("linux"), None);
        assert_eq!(
            serde_json::to_string(&Platform::MacOs).unwrap(),
            "\"macOS\""
        );
    }

    #[test]
    fn components_appear_once_whatever_the_version() {
        assert!(check_component_list(&[component(C1, &[]), component(C2, &[])]).is_ok());
        let err = check_component_list(&[component(C1, &[]), component(C1_OTHER_VERSION, &[])])
            .unwrap_err();
        let text = message(err);
        assert!(text.starts_with("components[1].componentArn:"), "{text}");
        assert!(text.contains("components[0]"), "{text}");
        let err = check_component_list(&[component(C1, &["a", "b", "a"])]).unwrap_err();
        assert!(message(err).starts_with("components[0].parameters[2].name:"));
    }

    #[test]
    fn parameters_against_the_declaration() {
        let declared = [
            DeclaredParameter {
                name: "required".into(),
                has_default: false,
            },
            DeclaredParameter {
                name: "optional".into(),
                has_default: true,
            },
        ];
        let given = |names: &[&str]| component(C1, names).parameters;
        assert!(check_component_parameters(0, &given(&["required"]), &declared).is_ok());
        assert!(
            check_component_parameters(0, &given(&["required", "optional"]), &declared).is_ok()
        );
        let text = message(check_component_parameters(2, &given(&[]), &declared).unwrap_err());
        assert!(text.starts_with("components[2].parameters:"), "{text}");
        assert!(text.contains("missing: required"), "{text}");
        let text = message(
            check_component_parameters(1, &given(&["required", "nope"]), &declared).unwrap_err(),
        );
        assert!(
            text.starts_with("components[1].parameters[1].name:"),
            "{text}"
        );
        assert!(
            text.contains("'nope'") && text.contains("required, optional"),
            "{text}"
        );
        let text = message(check_component_parameters(0, &given(&["x"]), &[]).unwrap_err());
        assert!(text.contains("declares no parameters"), "{text}");
    }

    #[test]
    fn parent_images() {
        for verbatim in [
            "ami-0123456789abcdef0",
            "ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
            "amazonlinux:latest",
            "prod-abcdefg",
            "arn:aws:ssm:us-east-1:123456789012:parameter/x",
        ] {
            assert_eq!(ParentImage::classify(verbatim), Ok(ParentImage::Other));
        }
        let image = "arn:aws:imagebuilder:us-east-1:aws:image/amazon-linux-2-x86/x.x.x";
        assert!(matches!(
            ParentImage::classify(image),
            Ok(ParentImage::ImageBuilderImage(_))
        ));
        let recipe = "arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/r/1.0.0";
        let text = message(ParentImage::classify(recipe).unwrap_err());
        assert!(
            text.starts_with("parentImage:") && text.contains("image recipe"),
            "{text}"
        );
        assert!(ParentImage::classify("arn:aws:imagebuilder:us-east-1:1:nope/x").is_err());
    }

    #[test]
    fn image_recipe_platform_rule() {
        use Platform::*;
        let other = ParentImage::Other;
        assert_eq!(image_recipe_platform(&[], &other), Ok(Linux));
        assert_eq!(
            image_recipe_platform(&[None, Some(Windows), None, Some(Windows)], &other),
            Ok(Windows)
        );
        let text = message(
            image_recipe_platform(&[Some(Linux), None, Some(Windows)], &other).unwrap_err(),
        );
        assert!(text.starts_with("components[2].componentArn:"), "{text}");
        assert!(text.contains("components[0] is for Linux"), "{text}");
        let windows = ParentImage::classify(
            "arn:aws:imagebuilder:us-east-1:aws:image/windows-server-2022-english-full-base-x86/x.x.x",
        )
        .unwrap();
        assert_eq!(image_recipe_platform(&[None], &windows), Ok(Windows));
        // Components win over the name of the parent image.
        assert_eq!(image_recipe_platform(&[Some(Linux)], &windows), Ok(Linux));
        let mac =
            ParentImage::classify("arn:aws:imagebuilder:us-east-1:aws:image/macos-14-arm64/x.x.x")
                .unwrap();
        assert_eq!(image_recipe_platform(&[], &mac), Ok(MacOs));
    }

    #[test]
    fn container_recipe_platform_rule() {
        use Platform::*;
        let other = ParentImage::Other;
        assert_eq!(container_recipe_platform(None, &other, &[]), Ok(Linux));
        assert_eq!(
            container_recipe_platform(Some(Windows), &other, &[None, Some(Windows)]),
            Ok(Windows)
        );
        assert!(
            message(container_recipe_platform(Some(MacOs), &other, &[]).unwrap_err())
                .starts_with("platformOverride:")
        );
        let text = message(container_recipe_platform(None, &other, &[Some(Windows)]).unwrap_err());
        assert!(text.starts_with("components[0].componentArn:"), "{text}");
        let image =
            ParentImage::classify("arn:aws:imagebuilder:us-east-1:123456789012:image/i/1.0.0/1")
                .unwrap();
        assert!(container_recipe_platform(Some(Linux), &image, &[]).is_err());
        assert_eq!(container_recipe_platform(None, &image, &[]), Ok(Linux));
    }

    fn ebs(
        volume_type: Option<&str>,
        iops: Option<i32>,
        throughput: Option<i32>,
    ) -> BlockDeviceMapping {
        BlockDeviceMapping {
            device_name: Some("/dev/xvda".into()),
            ebs: Some(EbsSettings {
                encrypted: None,
                delete_on_termination: None,
                iops,
                kms_key_id: None,
                snapshot_id: None,
                volume_size: Some(30),
                volume_type: volume_type.map(str::to_string),
                throughput,
            }),
            virtual_name: None,
            no_device: None,
        }
    }

    #[test]
    fn block_devices() {
        let f = "blockDeviceMappings";
        assert!(check_block_device_mappings(f, &[ebs(Some("gp3"), Some(3000), Some(250))]).is_ok());
        assert!(check_block_device_mappings(f, &[ebs(None, None, Some(250))]).is_ok());
        let text =
            message(check_block_device_mappings(f, &[ebs(Some("io2"), None, None)]).unwrap_err());
        assert!(
            text.starts_with("blockDeviceMappings[0].ebs.iops:"),
            "{text}"
        );
        let text = message(
            check_block_device_mappings(f, &[ebs(Some("gp2"), None, Some(250))]).unwrap_err(),
        );
        assert!(
            text.starts_with("blockDeviceMappings[0].ebs.throughput:"),
            "{text}"
        );
        let twice = [ebs(None, None, None), ebs(None, None, None)];
        let text = message(check_block_device_mappings(f, &twice).unwrap_err());
        assert!(
            text.starts_with("blockDeviceMappings[1].deviceName:"),
            "{text}"
        );
        let mut both = ebs(None, None, None);
        both.no_device = Some(String::new());
        assert!(check_block_device_mappings(f, &[both]).is_err());
    }

    #[test]
    fn watermarks_and_agent() {
        assert!(check_ami_watermarks(&["a".into(), "A".into()]).is_ok());
        assert!(
            message(check_ami_watermarks(&["a".into(), "a".into()]).unwrap_err())
                .starts_with("amiWatermarks[1]:")
        );
        let agent = AdditionalInstanceConfiguration {
            systems_manager_agent: Some(SystemsManagerAgent {
                uninstall_after_build: Some(true),
            }),
            user_data_override: None,
        };
        assert!(check_additional_instance_configuration(Some(&agent), Platform::Linux).is_ok());
        assert!(check_additional_instance_configuration(Some(&agent), Platform::Windows).is_err());
        assert!(check_additional_instance_configuration(None, Platform::Windows).is_ok());
    }
}
