//! Distribution configurations: where the output of a build goes, one entry per target Region.
//!
//! An entry says what to deliver in its Region: an AMI (with its name, sharing, tags and
//! encryption, plus the AMI-related extras: launch template versions, license configurations, a
//! disk image export to S3, Windows fast launch and SSM parameters) or a container image pushed
//! to an ECR repository. The wire layer has already checked every member's shape (lengths,
//! patterns, list sizes, enums); [`validate`] adds the rules that span members or entries.
//!
//! Lists and maps keep the presence the caller gave them (`None` versus a value) so that a
//! configuration reads back exactly as it was written.

use super::{Millis, Resource};
use crate::arn::Arn;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The API's `timeoutMinutes`: documented as unused and not settable, yet required in every
/// response. AWS answers with its maximum, 720, so Kiln does too.
pub const TIMEOUT_MINUTES: i32 = 720;

/// The only launch permission group EC2 knows: it makes the AMI public.
pub const PUBLIC_USER_GROUP: &str = "all";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistributionConfiguration {
    pub arn: Arn,
    /// The name as the caller wrote it (the ARN holds the normalised form).
    pub name: String,
    pub description: Option<String>,
    pub distributions: Vec<Distribution>,
    pub date_created: Millis,
    pub date_updated: Option<Millis>,
}

impl DistributionConfiguration {
    /// The target Regions, in the order the entries were given.
    pub fn regions(&self) -> Vec<String> {
        self.distributions
            .iter()
            .map(|d| d.region.clone())
            .collect()
    }
}

impl Resource for DistributionConfiguration {
    fn arn(&self) -> &Arn {
        &self.arn
    }
}

/// The settings for one target Region.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    pub region: String,
    pub ami_distribution_configuration: Option<AmiDistribution>,
    pub container_distribution_configuration: Option<ContainerDistribution>,
    pub license_configuration_arns: Option<Vec<String>>,
    pub launch_template_configurations: Option<Vec<LaunchTemplate>>,
    pub s3_export_configuration: Option<S3Export>,
    pub fast_launch_configurations: Option<Vec<FastLaunch>>,
    pub ssm_parameter_configurations: Option<Vec<SsmParameter>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmiDistribution {
    /// May hold placeholders such as `{{imagebuilder:buildDate}}`, resolved at distribution.
    pub name: Option<String>,
    pub description: Option<String>,
    pub target_account_ids: Option<Vec<String>>,
    pub ami_tags: Option<BTreeMap<String, String>>,
    pub kms_key_id: Option<String>,
    pub launch_permission: Option<LaunchPermission>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchPermission {
    pub user_ids: Option<Vec<String>>,
    pub user_groups: Option<Vec<String>>,
    pub organization_arns: Option<Vec<String>>,
    pub organizational_unit_arns: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerDistribution {
    pub description: Option<String>,
    pub container_tags: Option<Vec<String>>,
    pub target_repository: TargetRepository,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRepository {
    pub service: RepositoryService,
    pub repository_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RepositoryService {
    Ecr,
}

/// A launch template that gets a new version pointing at the distributed AMI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchTemplate {
    pub launch_template_id: String,
    pub account_id: Option<String>,
    /// Left as given: AWS treats an absent value as `true` when it distributes.
    pub set_default_version: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Export {
    pub role_name: String,
    pub disk_image_format: DiskImageFormat,
    pub s3_bucket: String,
    pub s3_prefix: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiskImageFormat {
    Vmdk,
    Raw,
    Vhd,
}

/// Windows fast launch for the distributed AMI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FastLaunch {
    pub enabled: bool,
    pub snapshot_configuration: Option<FastLaunchSnapshots>,
    pub max_parallel_launches: Option<i32>,
    pub launch_template: Option<FastLaunchTemplate>,
    pub account_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FastLaunchSnapshots {
    pub target_resource_count: Option<i32>,
}

/// Names a launch template by ID or by name, never both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FastLaunchTemplate {
    pub launch_template_id: Option<String>,
    pub launch_template_name: Option<String>,
    pub launch_template_version: Option<String>,
}

/// An SSM parameter that receives the distributed AMI's ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsmParameter {
    pub ami_account_id: Option<String>,
    pub parameter_name: String,
    pub data_type: Option<SsmDataType>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SsmDataType {
    Text,
    AwsEc2Image,
}

/// Why a set of distributions was refused. `field` is the member's path in the request, such
/// as `distributions[1].region`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DistributionError {
    /// One value is wrong on its own.
    Invalid { field: String, message: String },
    /// Values are fine alone but contradict each other.
    Conflict { field: String, message: String },
}

impl DistributionError {
    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        DistributionError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    fn conflict(field: impl Into<String>, message: impl Into<String>) -> Self {
        DistributionError::Conflict {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for DistributionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DistributionError::Invalid { field, message }
            | DistributionError::Conflict { field, message } => write!(f, "{field}: {message}"),
        }
    }
}

impl std::error::Error for DistributionError {}

/// Checks the rules that the model's shapes cannot express. `owner_account` is the account
/// that owns the configuration (and the AMIs it distributes).
pub fn validate(
    distributions: &[Distribution],
    owner_account: &str,
) -> Result<(), DistributionError> {
    if distributions.is_empty() {
        return Err(DistributionError::invalid(
            "distributions",
            "give at least one distribution (one entry per target Region)",
        ));
    }
    for (i, d) in distributions.iter().enumerate() {
        let at = format!("distributions[{i}]");
        check_region(&d.region, &format!("{at}.region"))?;
        if let Some(first) = distributions[..i].iter().position(|e| e.region == d.region) {
            return Err(DistributionError::conflict(
                format!("{at}.region"),
                format!(
                    "the Region '{}' already has an entry (distributions[{first}]); give one entry per Region",
                    d.region
                ),
            ));
        }
        check_entry(d, &at, owner_account)?;
    }
    Ok(())
}

fn check_entry(d: &Distribution, at: &str, owner_account: &str) -> Result<(), DistributionError> {
    let ami_settings = ami_settings_present(d);
    let container = d.container_distribution_configuration.as_ref();
    if container.is_none() && ami_settings.is_empty() {
        return Err(DistributionError::invalid(
            at,
            "give at least one output for the Region: amiDistributionConfiguration, \
             containerDistributionConfiguration, launchTemplateConfigurations, \
             s3ExportConfiguration, fastLaunchConfigurations, ssmParameterConfigurations \
             or licenseConfigurationArns",
        ));
    }
    if let Some(container) = container {
        if !ami_settings.is_empty() {
            return Err(DistributionError::conflict(
                format!("{at}.containerDistributionConfiguration"),
                format!(
                    "an entry distributes either a container image or an AMI, not both; \
                     remove {} or use another distribution configuration",
                    ami_settings.join(", ")
                ),
            ));
        }
        check_repository_name(
            &container.target_repository.repository_name,
            &format!("{at}.containerDistributionConfiguration.targetRepository.repositoryName"),
        )?;
        for (j, tag) in container.container_tags.iter().flatten().enumerate() {
            check_container_tag(
                tag,
                &format!("{at}.containerDistributionConfiguration.containerTags[{j}]"),
            )?;
        }
    }
    if let Some(name) = d
        .ami_distribution_configuration
        .as_ref()
        .and_then(|a| a.name.as_deref())
    {
        super::ami::check_name_template(name).map_err(|message| {
            DistributionError::invalid(format!("{at}.amiDistributionConfiguration.name"), message)
        })?;
    }
    check_launch_template_accounts(d, at, owner_account)?;
    check_user_groups(d, at)?;
    check_fast_launch_templates(d, at)?;
    check_ssm_accounts(d, at, owner_account)
}

/// The AMI-only members an entry sets. Empty lists count as absent: they ask for nothing.
fn ami_settings_present(d: &Distribution) -> Vec<&'static str> {
    fn some_items<T>(v: &Option<Vec<T>>) -> bool {
        v.as_ref().is_some_and(|v| !v.is_empty())
    }
    let mut present = Vec::new();
    if d.ami_distribution_configuration.is_some() {
        present.push("amiDistributionConfiguration");
    }
    if some_items(&d.launch_template_configurations) {
        present.push("launchTemplateConfigurations");
    }
    if some_items(&d.license_configuration_arns) {
        present.push("licenseConfigurationArns");
    }
    if d.s3_export_configuration.is_some() {
        present.push("s3ExportConfiguration");
    }
    if some_items(&d.fast_launch_configurations) {
        present.push("fastLaunchConfigurations");
    }
    if some_items(&d.ssm_parameter_configurations) {
        present.push("ssmParameterConfigurations");
    }
    present
}

/// The model only says "a non-empty string"; a Region code looks like `us-east-1` or
/// `us-gov-west-1`: two letters, one or more words, a number.
pub fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    let [prefix, words @ .., number] = parts.as_slice() else {
        return false;
    };
    let lowercase_word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase());
    prefix.len() == 2
        && lowercase_word(prefix)
        && !words.is_empty()
        && words.iter().all(|w| lowercase_word(w))
        && !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
}

fn check_region(region: &str, field: &str) -> Result<(), DistributionError> {
    if is_region(region) {
        Ok(())
    } else {
        Err(DistributionError::invalid(
            field,
            format!("'{region}' is not an AWS Region code (for example 'us-east-1')"),
        ))
    }
}

/// The API documents the repository name alone, optionally with a namespace path; a registry
/// host, tag or digest would make the push go somewhere else, so they are refused. Container
/// recipes' `targetRepository.repositoryName` follows the same rule.
pub fn check_repository_name(name: &str, field: &str) -> Result<(), DistributionError> {
    let refuse = |why: &str| Err(DistributionError::invalid(field, format!("'{name}' {why}")));
    let first_segment = name.split('/').next().unwrap_or_default();
    if name.contains(".dkr.ecr.") || first_segment.ends_with("amazonaws.com") {
        return refuse(
            "includes a registry hostname; give the repository name only, such as 'team-a/my-repo'",
        );
    }
    if name.contains(':') || name.contains('@') {
        return refuse("includes a tag or digest; give the repository name only and put image tags in containerTags");
    }
    if !is_ecr_repository_name(name) {
        return refuse("is not an ECR repository name: lowercase letters and digits, separated by '.', '_', '-' or '/', 2 to 256 characters");
    }
    Ok(())
}

/// A container image tag as registries take it (ECR and the OCI distribution spec):
/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`. The model only bounds the length (1-1024), but a tag
/// outside this rule could never be pushed, so it is refused when the configuration is written.
pub fn is_container_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    first_ok
        && tag.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn check_container_tag(tag: &str, field: &str) -> Result<(), DistributionError> {
    if is_container_tag(tag) {
        return Ok(());
    }
    Err(DistributionError::invalid(
        field,
        format!(
            "'{tag}' is not a container image tag: letters, digits, '_', '.' and '-', \
             starting with a letter, digit or '_', at most 128 characters"
        ),
    ))
}

/// ECR's rule: `(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*`, 2-256 long.
fn is_ecr_repository_name(name: &str) -> bool {
    let component_ok = |c: &str| {
        let mut previous_was_separator = true;
        for b in c.bytes() {
            let separator = matches!(b, b'.' | b'_' | b'-');
            let alnum = b.is_ascii_lowercase() || b.is_ascii_digit();
            if !(separator || alnum) || (separator && previous_was_separator) {
                return false;
            }
            previous_was_separator = separator;
        }
        !previous_was_separator
    };
    (2..=256).contains(&name.len()) && name.split('/').all(component_ok)
}

/// A launch template gets a version pointing at the AMI of its account, so its account must
/// receive one: the owner, or one of `targetAccountIds`.
fn check_launch_template_accounts(
    d: &Distribution,
    at: &str,
    owner_account: &str,
) -> Result<(), DistributionError> {
    let targets = d
        .ami_distribution_configuration
        .as_ref()
        .and_then(|a| a.target_account_ids.as_ref());
    for (j, lt) in d
        .launch_template_configurations
        .iter()
        .flatten()
        .enumerate()
    {
        let Some(account) = lt.account_id.as_deref() else {
            continue;
        };
        if account != owner_account && !targets.is_some_and(|t| t.iter().any(|a| a == account)) {
            return Err(DistributionError::conflict(
                format!("{at}.launchTemplateConfigurations[{j}].accountId"),
                format!(
                    "account {account} receives no AMI in {}: add it to \
                     amiDistributionConfiguration.targetAccountIds",
                    d.region
                ),
            ));
        }
    }
    Ok(())
}

fn check_user_groups(d: &Distribution, at: &str) -> Result<(), DistributionError> {
    let groups = d
        .ami_distribution_configuration
        .as_ref()
        .and_then(|a| a.launch_permission.as_ref())
        .and_then(|p| p.user_groups.as_ref());
    for (j, group) in groups.into_iter().flatten().enumerate() {
        if group != PUBLIC_USER_GROUP {
            return Err(DistributionError::invalid(
                format!("{at}.amiDistributionConfiguration.launchPermission.userGroups[{j}]"),
                format!(
                    "'{group}' is not supported; the only group is '{PUBLIC_USER_GROUP}' (public)"
                ),
            ));
        }
    }
    Ok(())
}

fn check_fast_launch_templates(d: &Distribution, at: &str) -> Result<(), DistributionError> {
    let configurations = d.fast_launch_configurations.iter().flatten();
    for (j, fast_launch) in configurations.enumerate() {
        let Some(template) = &fast_launch.launch_template else {
            continue;
        };
        let by_id = template.launch_template_id.is_some();
        let by_name = template.launch_template_name.is_some();
        if by_id == by_name {
            return Err(DistributionError::conflict(
                format!("{at}.fastLaunchConfigurations[{j}].launchTemplate"),
                "give either launchTemplateId or launchTemplateName, not both or neither",
            ));
        }
    }
    Ok(())
}

/// The parameter's owner has to receive the AMI in that Region: the owner of the configuration
/// always does, any other account only when it is one of the entry's target accounts.
fn check_ssm_accounts(
    d: &Distribution,
    at: &str,
    owner_account: &str,
) -> Result<(), DistributionError> {
    let targets: &[String] = d
        .ami_distribution_configuration
        .as_ref()
        .and_then(|a| a.target_account_ids.as_deref())
        .unwrap_or_default();
    let parameters = d.ssm_parameter_configurations.iter().flatten();
    for (j, parameter) in parameters.enumerate() {
        let Some(account) = &parameter.ami_account_id else {
            continue;
        };
        if account != owner_account && !targets.contains(account) {
            return Err(DistributionError::conflict(
                format!("{at}.ssmParameterConfigurations[{j}].amiAccountId"),
                format!(
                    "the account '{account}' does not receive the AMI in {}; add it to amiDistributionConfiguration.targetAccountIds",
                    d.region
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arn::ResourceKind;

    const OWNER: &str = "123456789012";

    fn ami_entry(region: &str) -> Distribution {
        Distribution {
            region: region.into(),
            ami_distribution_configuration: Some(AmiDistribution {
                name: Some("web {{imagebuilder:buildDate}}".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn container_entry(region: &str, repository: &str) -> Distribution {
        Distribution {
            region: region.into(),
            container_distribution_configuration: Some(ContainerDistribution {
                description: None,
                container_tags: Some(vec!["latest".into()]),
                target_repository: TargetRepository {
                    service: RepositoryService::Ecr,
                    repository_name: repository.into(),
                },
            }),
            ..Default::default()
        }
    }

    fn field_of(e: DistributionError) -> (bool, String) {
        match e {
            DistributionError::Invalid { field, .. } => (false, field),
            DistributionError::Conflict { field, .. } => (true, field),
        }
    }

    #[test]
    fn accepts_ami_and_container_entries_in_different_regions() {
        let entries = [
            ami_entry("us-west-2"),
            container_entry("us-east-1", "team-a/my-repo"),
        ];
        assert_eq!(validate(&entries, OWNER), Ok(()));
    }

    #[test]
    fn refuses_container_tags_no_registry_takes() {
        for good in ["latest", "1.0.0-1", "_x", "A.b-c_d"] {
            assert!(is_container_tag(good), "{good}");
        }
        let long = "a".repeat(129);
        for bad in ["", "-x", ".x", "a b", "a:b", "a/b", long.as_str()] {
            assert!(!is_container_tag(bad), "{bad}");
        }
        let mut entry = container_entry("us-east-1", "app");
        if let Some(c) = entry.container_distribution_configuration.as_mut() {
            c.container_tags = Some(vec!["latest".into(), "not ok".into()]);
        }
        let (conflict, field) = field_of(validate(&[entry], OWNER).unwrap_err());
        assert!(!conflict);
        assert_eq!(
            field,
            "distributions[0].containerDistributionConfiguration.containerTags[1]"
        );
    }

    #[test]
    fn refuses_an_empty_list() {
        let (_, field) = field_of(validate(&[], OWNER).unwrap_err());
        assert_eq!(field, "distributions");
    }

    #[test]
    fn one_entry_per_region() {
        let entries = [
            ami_entry("us-west-2"),
            ami_entry("eu-west-1"),
            ami_entry("us-west-2"),
        ];
        let e = validate(&entries, OWNER).unwrap_err();
        assert!(e.to_string().contains("distributions[0]"), "{e}");
        assert_eq!(field_of(e), (true, "distributions[2].region".to_string()));
    }

    #[test]
    fn region_codes() {
        for good in [
            "us-east-1",
            "us-gov-west-1",
            "cn-north-1",
            "ap-southeast-4",
            "eu-central-12",
        ] {
            assert!(is_region(good), "{good}");
        }
        for bad in [
            "",
            "us-east",
            "US-EAST-1",
            "useast1",
            "u-east-1",
            "us--1",
            "us-east-1a",
            "us-east-",
            "-us-east-1",
        ] {
            assert!(!is_region(bad), "{bad}");
        }
        let (conflict, field) = field_of(validate(&[ami_entry("moon-1")], OWNER).unwrap_err());
        assert_eq!(
            (conflict, field.as_str()),
            (false, "distributions[0].region")
        );
    }

    #[test]
    fn an_entry_needs_an_output() {
        let bare = Distribution {
            region: "us-east-1".into(),
            ssm_parameter_configurations: Some(vec![]),
            ..Default::default()
        };
        let (_, field) = field_of(validate(&[ami_entry("us-west-2"), bare], OWNER).unwrap_err());
        assert_eq!(field, "distributions[1]");

        let export_only = Distribution {
            region: "us-east-1".into(),
            s3_export_configuration: Some(S3Export {
                role_name: "vmimport".into(),
                disk_image_format: DiskImageFormat::Vmdk,
                s3_bucket: "b".into(),
                s3_prefix: None,
            }),
            ..Default::default()
        };
        assert_eq!(validate(&[export_only], OWNER), Ok(()));
    }

    #[test]
    fn container_and_ami_settings_do_not_mix_in_one_entry() {
        let mut entry = container_entry("us-east-1", "repo");
        entry.launch_template_configurations = Some(vec![LaunchTemplate {
            launch_template_id: "lt-0123456789abcdef0".into(),
            account_id: None,
            set_default_version: None,
        }]);
        let e = validate(&[entry], OWNER).unwrap_err();
        assert!(
            e.to_string().contains("launchTemplateConfigurations"),
            "{e}"
        );
        assert_eq!(
            field_of(e),
            (
                true,
                "distributions[0].containerDistributionConfiguration".to_string()
            )
        );
    }

    #[test]
    fn repository_names() {
        for good in ["my-repo", "team-a/my-repo", "a.b_c-d/e"] {
            assert_eq!(
                validate(&[container_entry("us-east-1", good)], OWNER),
                Ok(()),
                "{good}"
            );
        }
        for bad in [
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/repo",
            "repo:latest",
            "repo@sha256:abc",
            "MyRepo",
            "a//b",
            "-repo",
            "x",
        ] {
            let (_, field) =
                field_of(validate(&[container_entry("us-east-1", bad)], OWNER).unwrap_err());
            assert_eq!(
                field,
                "distributions[0].containerDistributionConfiguration.targetRepository.repositoryName",
                "{bad}"
            );
        }
    }

    #[test]
    fn placeholders_in_ami_names_are_fine() {
        let mut entry = ami_entry("us-east-1");
        if let Some(ami) = entry.ami_distribution_configuration.as_mut() {
            ami.name =
                Some("My {{imagebuilder:buildVersion}} image {{imagebuilder:buildDate}}".into());
        }
        assert_eq!(validate(&[entry], OWNER), Ok(()));
    }

    #[test]
    fn only_the_public_user_group() {
        let mut entry = ami_entry("us-east-1");
        let permission = |groups: &[&str]| LaunchPermission {
            user_groups: Some(groups.iter().map(|g| g.to_string()).collect()),
            ..Default::default()
        };
        if let Some(ami) = entry.ami_distribution_configuration.as_mut() {
            ami.launch_permission = Some(permission(&["all"]));
        }
        assert_eq!(validate(std::slice::from_ref(&entry), OWNER), Ok(()));
        if let Some(ami) = entry.ami_distribution_configuration.as_mut() {
            ami.launch_permission = Some(permission(&["all", "admins"]));
        }
        let (_, field) = field_of(validate(&[entry], OWNER).unwrap_err());
        assert_eq!(
            field,
            "distributions[0].amiDistributionConfiguration.launchPermission.userGroups[1]"
        );
    }

    #[test]
    fn fast_launch_template_by_id_or_name() {
        let with_template = |id: Option<&str>, name: Option<&str>| Distribution {
            region: "us-east-1".into(),
            fast_launch_configurations: Some(vec![FastLaunch {
                enabled: true,
                snapshot_configuration: None,
                max_parallel_launches: Some(6),
                launch_template: Some(FastLaunchTemplate {
                    launch_template_id: id.map(Into::into),
                    launch_template_name: name.map(Into::into),
                    launch_template_version: None,
                }),
                account_id: None,
            }]),
            ..Default::default()
        };
        assert_eq!(
            validate(&[with_template(Some("lt-0123456789abcdef0"), None)], OWNER),
            Ok(())
        );
        assert_eq!(
            validate(&[with_template(None, Some("fast"))], OWNER),
            Ok(())
        );
        for (id, name) in [(Some("lt-0123456789abcdef0"), Some("fast")), (None, None)] {
            let (conflict, field) =
                field_of(validate(&[with_template(id, name)], OWNER).unwrap_err());
            assert!(conflict);
            assert_eq!(
                field,
                "distributions[0].fastLaunchConfigurations[0].launchTemplate"
            );
        }
    }

    #[test]
    fn ssm_parameter_owners_must_receive_the_ami() {
        let entry = |account: &str, targets: Option<Vec<String>>| {
            let mut d = ami_entry("us-east-1");
            if let Some(ami) = d.ami_distribution_configuration.as_mut() {
                ami.target_account_ids = targets;
            }
            d.ssm_parameter_configurations = Some(vec![SsmParameter {
                ami_account_id: Some(account.into()),
                parameter_name: "/ib/ami".into(),
                data_type: Some(SsmDataType::AwsEc2Image),
            }]);
            d
        };
        assert_eq!(validate(&[entry(OWNER, None)], OWNER), Ok(()));
        let other = "111122223333";
        assert_eq!(
            validate(&[entry(other, Some(vec![other.into()]))], OWNER),
            Ok(())
        );
        let (conflict, field) = field_of(validate(&[entry(other, None)], OWNER).unwrap_err());
        assert!(conflict);
        assert_eq!(
            field,
            "distributions[0].ssmParameterConfigurations[0].amiAccountId"
        );
    }

    fn full_record() -> DistributionConfiguration {
        let arn = Arn::new(
            "us-east-1",
            OWNER,
            ResourceKind::DistributionConfiguration,
            "dist",
        );
        let every_ami_member = Distribution {
            region: "us-west-2".into(),
            ami_distribution_configuration: Some(AmiDistribution {
                name: Some("web {{imagebuilder:buildDate}}".into()),
                description: Some("web servers".into()),
                target_account_ids: Some(vec!["111122223333".into()]),
                ami_tags: Some(BTreeMap::from([("team".into(), "web".into())])),
                kms_key_id: Some("arn:aws:kms:us-west-2:123456789012:key/k".into()),
                launch_permission: Some(LaunchPermission {
                    user_ids: Some(vec!["444455556666".into()]),
                    user_groups: Some(vec!["all".into()]),
                    organization_arns: Some(vec![]),
                    organizational_unit_arns: None,
                }),
            }),
            container_distribution_configuration: None,
            license_configuration_arns: Some(vec!["arn:aws:license-manager:us-west-2:123456789012:license-configuration:lic-0123456789abcdef0123456789abcdef".into()]),
            launch_template_configurations: Some(vec![LaunchTemplate {
                launch_template_id: "lt-0123456789abcdef0".into(),
                account_id: Some("111122223333".into()),
                set_default_version: Some(false),
            }]),
            s3_export_configuration: Some(S3Export {
                role_name: "vmimport".into(),
                disk_image_format: DiskImageFormat::Vhd,
                s3_bucket: "bucket".into(),
                s3_prefix: Some("exports/".into()),
            }),
            fast_launch_configurations: Some(vec![FastLaunch {
                enabled: true,
                snapshot_configuration: Some(FastLaunchSnapshots {
                    target_resource_count: Some(5),
                }),
                max_parallel_launches: Some(6),
                launch_template: Some(FastLaunchTemplate {
                    launch_template_id: None,
                    launch_template_name: Some("fast".into()),
                    launch_template_version: Some("2".into()),
                }),
                account_id: Some(OWNER.into()),
            }]),
            ssm_parameter_configurations: Some(vec![SsmParameter {
                ami_account_id: None,
                parameter_name: "/ib/ami".into(),
                data_type: Some(SsmDataType::Text),
            }]),
        };
        DistributionConfiguration {
            arn,
            name: "Dist".into(),
            description: Some("all outputs".into()),
            distributions: vec![
                every_ami_member,
                container_entry("us-east-1", "team-a/repo"),
            ],
            date_created: 1_700_000_000_000,
            date_updated: Some(1_700_000_100_000),
        }
    }

    #[test]
    fn the_record_round_trips_through_serde() {
        let record = full_record();
        let json = serde_json::to_string(&record).unwrap();
        let back: DistributionConfiguration = serde_json::from_str(&json).unwrap();
        assert_eq!(back, record);
        assert_eq!(back.regions(), vec!["us-west-2", "us-east-1"]);
        assert_eq!(validate(&back.distributions, OWNER), Ok(()));
    }

    #[test]
    fn absent_and_empty_lists_stay_distinct_when_stored() {
        let record = full_record();
        let back: DistributionConfiguration =
            serde_json::from_str(&serde_json::to_string(&record).unwrap()).unwrap();
        let permission = back.distributions[0]
            .ami_distribution_configuration
            .as_ref()
            .and_then(|a| a.launch_permission.clone())
            .unwrap();
        assert_eq!(permission.organization_arns, Some(vec![]));
        assert_eq!(permission.organizational_unit_arns, None);
    }
}
