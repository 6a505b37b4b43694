//! AMIs: what distribution makes of an AMI-type image, one per Region and account.
//!
//! An Image Builder image is one build; the AMIs are what EC2 users see of it. Distribution
//! ([`Image::ami_destinations`]) gives every `distributions[]` entry that asks for an AMI one
//! AMI owned by the image's account in that Region, plus one copy owned by each of its
//! `targetAccountIds`. Each AMI is a record of its own ([`Ami`], kept under a storage key of
//! kind [`ResourceKind::Ami`]): its owner, name, description, tags, launch permissions and
//! deprecation time belong to it, and EC2's calls (DescribeImages, CreateTags,
//! ModifyImageAttribute, DeregisterImage...) act on it. Its contents are the image's: the build
//! id names them in the image store, so a copy needs no bytes of its own and outlives the Image
//! Builder image (DeleteImage does not deregister AMIs, as on AWS).
//!
//! Nothing here does IO: ids and dates come from the caller.

use super::distribution::{AmiDistribution, Distribution, LaunchPermission, PUBLIC_USER_GROUP};
use super::image::Image;
use super::{Millis, Resource};
use crate::arn::{Arn, ResourceKind};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The architecture of every image Kiln builds (its instance types are x86_64).
pub const ARCHITECTURE: &str = "x86_64";

/// One AMI in one account and Region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ami {
    /// The storage key: `arn:aws:imagebuilder:<region>:<owner>:ami/<image id>`. EC2 AMIs have
    /// no Image Builder ARN; this one never leaves Kiln (the API's ARN patterns refuse `ami/`).
    pub arn: Arn,
    /// `ami-` and 17 hex digits.
    pub image_id: String,
    pub name: String,
    pub description: Option<String>,
    /// The Image Builder image it was distributed from (in the account that built it).
    pub source_image: String,
    /// Names the contents in the image store (`kiln-<build id>`).
    pub build_id: String,
    pub image_digest: Option<String>,
    pub os_version: Option<String>,
    /// `Linux` or `Windows` (the recipe's platform).
    pub platform: String,
    pub creation_date: Millis,
    pub tags: BTreeMap<String, String>,
    pub launch_permission: LaunchPermissions,
    /// The KMS key the distribution configuration named: EC2 shows the AMI's snapshot as
    /// encrypted with it. Kiln records it; its store is not encrypted per key.
    pub kms_key_id: Option<String>,
    /// When EC2 calls the AMI deprecated (EnableImageDeprecation).
    pub deprecation_time: Option<Millis>,
    /// Disk images exported to S3 from this AMI (the distribution's `s3ExportConfiguration`).
    #[serde(default)]
    pub exports: Vec<S3ExportRecord>,
    /// Disabled by a lifecycle action (DisableImage on EC2): private, and shown with the
    /// state `disabled`.
    #[serde(default)]
    pub disabled: bool,
    /// When a build last launched an instance from it (its image as a build's parent, by
    /// `ami-` id or by Image Builder ARN): the lifecycle exclusion `lastLaunched` reads it.
    #[serde(default)]
    pub last_launched: Option<Millis>,
}

/// Who besides the owner may launch (and so build on) an AMI.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchPermissions {
    pub user_ids: BTreeSet<String>,
    /// The `all` group: every account.
    pub public: bool,
    /// Recorded and answered by DescribeImageAttribute. Kiln has no AWS Organizations, so they
    /// make the AMI launchable by no further account.
    pub organization_arns: BTreeSet<String>,
    pub organizational_unit_arns: BTreeSet<String>,
}

impl LaunchPermissions {
    /// The permissions a distribution entry grants.
    pub fn from_config(config: Option<&LaunchPermission>) -> LaunchPermissions {
        let Some(c) = config else {
            return LaunchPermissions::default();
        };
        let set = |v: &Option<Vec<String>>| v.iter().flatten().cloned().collect::<BTreeSet<_>>();
        LaunchPermissions {
            user_ids: set(&c.user_ids),
            public: c
                .user_groups
                .iter()
                .flatten()
                .any(|g| g == PUBLIC_USER_GROUP),
            organization_arns: set(&c.organization_arns),
            organizational_unit_arns: set(&c.organizational_unit_arns),
        }
    }
}

/// One launch permission, as EC2's ModifyImageAttribute names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grantee {
    /// `UserId`: an account.
    Account(String),
    /// `Group=all`: every account.
    Public,
    /// `OrganizationArn`.
    Organization(String),
    /// `OrganizationalUnitArn`.
    OrganizationalUnit(String),
}

impl LaunchPermissions {
    /// Grants `grantee` (granting twice is granting once, as on EC2).
    pub fn add(&mut self, grantee: &Grantee) {
        match grantee {
            Grantee::Account(a) => {
                self.user_ids.insert(a.clone());
            }
            Grantee::Public => self.public = true,
            Grantee::Organization(a) => {
                self.organization_arns.insert(a.clone());
            }
            Grantee::OrganizationalUnit(a) => {
                self.organizational_unit_arns.insert(a.clone());
            }
        }
    }

    /// Takes `grantee`'s permission away (removing one it does not have changes nothing).
    pub fn remove(&mut self, grantee: &Grantee) {
        match grantee {
            Grantee::Account(a) => {
                self.user_ids.remove(a);
            }
            Grantee::Public => self.public = false,
            Grantee::Organization(a) => {
                self.organization_arns.remove(a);
            }
            Grantee::OrganizationalUnit(a) => {
                self.organizational_unit_arns.remove(a);
            }
        }
    }

    /// Every permission, in the order EC2 lists them (groups, then accounts, organizations and
    /// organizational units).
    pub fn grantees(&self) -> Vec<Grantee> {
        let mut out = Vec::new();
        if self.public {
            out.push(Grantee::Public);
        }
        out.extend(self.user_ids.iter().cloned().map(Grantee::Account));
        out.extend(
            self.organization_arns
                .iter()
                .cloned()
                .map(Grantee::Organization),
        );
        out.extend(
            self.organizational_unit_arns
                .iter()
                .cloned()
                .map(Grantee::OrganizationalUnit),
        );
        out
    }
}

/// How far ahead a deprecation time may be (EC2: 10 years from now).
pub const MAX_DEPRECATION_MONTHS: u32 = 120;
/// A public AMI is deprecated at most this long after its creation (EC2 sets it so when an
/// AMI is made public, and refuses later times while it is public).
pub const PUBLIC_DEPRECATION_MONTHS: u32 = 24;

/// `millis` plus whole calendar months (clamped at the end of chrono's range).
pub fn add_months(millis: Millis, months: u32) -> Millis {
    chrono::DateTime::from_timestamp_millis(millis)
        .and_then(|t| t.checked_add_months(chrono::Months::new(months)))
        .map_or(Millis::MAX, |t| t.timestamp_millis())
}

/// EC2 rounds a deprecation time to the nearest minute (30 seconds round up).
pub fn round_to_minute(millis: Millis) -> Millis {
    const MINUTE: Millis = 60_000;
    (millis + MINUTE / 2).div_euclid(MINUTE) * MINUTE
}

/// A disk image written to S3 from an AMI (EC2's export image task).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3ExportRecord {
    /// `export-ami-` and 17 hex digits.
    pub task_id: String,
    /// `RAW`, `VMDK` or `VHD`.
    pub disk_image_format: String,
    pub s3_bucket: String,
    pub s3_key: String,
    pub role_name: String,
    pub size: u64,
    pub completed: Millis,
}

impl Resource for Ami {
    fn arn(&self) -> &Arn {
        &self.arn
    }
}

impl Ami {
    /// The storage key of the AMI `image_id` owned by `owner` in `region`.
    pub fn key(region: &str, owner: &str, image_id: &str) -> Arn {
        Arn::new(region, owner, ResourceKind::Ami, image_id)
    }

    pub fn owner(&self) -> &str {
        &self.arn.account
    }

    pub fn region(&self) -> &str {
        &self.arn.region
    }

    /// Whether `account` may launch it: its owner, an account it was shared with, or anyone
    /// when it is public.
    pub fn launchable_by(&self, account: &str) -> bool {
        self.owner() == account
            || self.launch_permission.public
            || self.launch_permission.user_ids.contains(account)
    }

    /// `true` once its deprecation time has passed.
    pub fn deprecated_at(&self, now: Millis) -> bool {
        self.deprecation_time.is_some_and(|t| t <= now)
    }

    /// The latest deprecation time EC2 accepts for it at `now`: 10 years ahead, or for a public
    /// AMI two years after its creation.
    pub fn latest_deprecation(&self, now: Millis) -> Millis {
        if self.launch_permission.public {
            add_months(self.creation_date, PUBLIC_DEPRECATION_MONTHS)
        } else {
            add_months(now, MAX_DEPRECATION_MONTHS)
        }
    }

    /// Makes it public, as EC2 does: its deprecation time becomes at most two years after its
    /// creation (the User Guide: "the deprecation date of all public AMIs is set to two years
    /// from the AMI creation date").
    pub fn make_public(&mut self) {
        self.launch_permission.public = true;
        let limit = round_to_minute(add_months(self.creation_date, PUBLIC_DEPRECATION_MONTHS));
        self.deprecation_time = Some(self.deprecation_time.map_or(limit, |t| t.min(limit)));
    }
}

/// What an AMI-type image left behind in one Region and account: the API's
/// `outputResources.amis[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmiOutput {
    pub region: String,
    pub image_id: String,
    pub name: String,
    pub description: Option<String>,
    pub account_id: String,
}

/// One AMI distribution is to make: a Region and an owning account, with what the AMI gets
/// there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmiDestination {
    /// The `distributions[]` entry it comes from; `None` for the build Region's AMI of an image
    /// without a distribution configuration.
    pub entry: Option<usize>,
    pub region: String,
    pub account: String,
    /// The name template (`{{ imagebuilder:buildDate }}`...), before rendering.
    pub name_template: String,
    pub description: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub kms_key_id: Option<String>,
    pub launch_permission: LaunchPermissions,
}

/// The variables an AMI name may use, as AWS documents them.
pub const NAME_VARIABLES: [&str; 2] = ["buildDate", "buildVersion"];

/// What the name variables stand for in one build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameValues {
    /// `2026-12-05T19-40-00.123Z`: the build's date, with `-` for `:` (AMI names have no `:`).
    pub build_date: String,
    /// The build number of the image's build version ARN (`/1.0.0/3` -> `3`).
    pub build_version: String,
}

impl NameValues {
    pub fn new(build_millis: Millis, build: u32) -> NameValues {
        let date = chrono::DateTime::from_timestamp_millis(build_millis).unwrap_or_default();
        NameValues {
            build_date: date.format("%Y-%m-%dT%H-%M-%S%.3fZ").to_string(),
            build_version: build.to_string(),
        }
    }
}

/// Renders an AMI name template: every `{{ imagebuilder:<variable> }}` (spaces inside the braces
/// optional) replaced by its value. An unknown variable or an unclosed `{{` is an error naming it.
pub fn render_name(template: &str, values: &NameValues) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 24);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("'{template}' has a '{{{{' without its '}}}}'"))?;
        let variable = after[..end].trim();
        let value = match variable.strip_prefix("imagebuilder:") {
            Some("buildDate") => &values.build_date,
            Some("buildVersion") => &values.build_version,
            _ => {
                return Err(format!(
                    "'{{{{ {variable} }}}}' is not a variable of AMI names; they may use {}",
                    NAME_VARIABLES
                        .iter()
                        .map(|v| format!("{{{{ imagebuilder:{v} }}}}"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ))
            }
        };
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// EC2's rule for AMI names: 3-128 characters, letters, digits, spaces and `( ) [ ] . / - ' @ _`.
pub fn check_ami_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                ' ' | '(' | ')' | '[' | ']' | '.' | '/' | '-' | '\'' | '@' | '_'
            )
    };
    if !(3..=128).contains(&name.chars().count()) {
        return Err(format!(
            "the AMI name '{name}' must be 3 to 128 characters long"
        ));
    }
    if let Some(bad) = name.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "the AMI name '{name}' has '{bad}'; AMI names may hold letters, digits, spaces \
             and ( ) [ ] . / - ' @ _"
        ));
    }
    Ok(())
}

/// Checks an entry's name template when the configuration is written: it renders, and what it
/// renders to is an AMI name (with the longest values the variables take).
pub fn check_name_template(template: &str) -> Result<(), String> {
    let sample = NameValues {
        build_date: "2026-12-31T23-59-59.999Z".to_string(),
        build_version: "1".to_string(),
    };
    check_ami_name(&render_name(template, &sample)?)
}

/// The default name template: `<image name> {{ imagebuilder:buildDate }}`, as AWS names AMIs
/// (`my-image 2022-10-26T22-30-05.912Z`).
pub fn default_name_template(image_name: &str) -> String {
    format!("{image_name} {{{{ imagebuilder:buildDate }}}}")
}

impl Image {
    /// The AMIs distribution makes of an AMI-type image: for every `distributions[]` entry that
    /// asks for an AMI (any AMI member, or none at all but not a container), one owned by the
    /// image's account in the entry's Region, then one per `targetAccountIds` entry (each once;
    /// the owner is never copied to itself). Without a distribution configuration, or with
    /// one that has no AMI entry, one AMI in the build Region. The recipe's description goes to
    /// the build Region's own AMI only; copies get the entry's `description` or none (the
    /// User Guide). Empty for container images.
    pub fn ami_destinations(&self, recipe_description: Option<&str>) -> Vec<AmiDestination> {
        if self.image_type != super::image::ImageType::Ami {
            return Vec::new();
        }
        let owner = self.owner.clone();
        let build_region = self.arn.region.clone();
        let default_name = default_name_template(&self.name);
        let own_description = |region: &str, account: &str, explicit: Option<&String>| {
            explicit.cloned().or_else(|| {
                (region == build_region && account == owner)
                    .then(|| recipe_description.map(str::to_string))
                    .flatten()
            })
        };
        let entries: Vec<(usize, &Distribution)> = self
            .snapshot
            .iter()
            .flat_map(|s| s.distribution.iter())
            .flat_map(|d| d.distributions.iter().enumerate())
            .filter(|(_, d)| d.container_distribution_configuration.is_none())
            .collect();
        if entries.is_empty() {
            return vec![AmiDestination {
                entry: None,
                region: build_region.clone(),
                account: owner.clone(),
                name_template: default_name,
                description: own_description(&build_region, &owner, None),
                tags: BTreeMap::new(),
                kms_key_id: None,
                launch_permission: LaunchPermissions::default(),
            }];
        }
        let mut out = Vec::new();
        for (i, d) in entries {
            let ami: Option<&AmiDistribution> = d.ami_distribution_configuration.as_ref();
            let mut accounts = vec![owner.clone()];
            for a in ami
                .and_then(|a| a.target_account_ids.as_ref())
                .into_iter()
                .flatten()
            {
                if !accounts.contains(a) {
                    accounts.push(a.clone());
                }
            }
            for account in accounts {
                out.push(AmiDestination {
                    entry: Some(i),
                    region: d.region.clone(),
                    name_template: ami
                        .and_then(|a| a.name.clone())
                        .unwrap_or_else(|| default_name.clone()),
                    description: own_description(
                        &d.region,
                        &account,
                        ami.and_then(|a| a.description.as_ref()),
                    ),
                    tags: ami.and_then(|a| a.ami_tags.clone()).unwrap_or_default(),
                    kms_key_id: ami.and_then(|a| a.kms_key_id.clone()),
                    launch_permission: LaunchPermissions::from_config(
                        ami.and_then(|a| a.launch_permission.as_ref()),
                    ),
                    account,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> NameValues {
        NameValues::new(1_764_963_605_123, 3)
    }

    #[test]
    fn renders_the_documented_variables() {
        assert_eq!(
            render_name("web-{{ imagebuilder:buildDate }}", &values()).unwrap(),
            "web-2025-12-05T19-40-05.123Z"
        );
        assert_eq!(
            render_name("web {{imagebuilder:buildVersion}} x", &values()).unwrap(),
            "web 3 x"
        );
        assert_eq!(render_name("plain", &values()).unwrap(), "plain");
    }

    #[test]
    fn refuses_unknown_variables_and_unclosed_braces() {
        let e = render_name("web-{{ imagebuilder:nope }}", &values()).unwrap_err();
        assert!(
            e.contains("imagebuilder:nope") && e.contains("buildDate"),
            "{e}"
        );
        assert!(render_name("web-{{ imagebuilder:buildDate", &values()).is_err());
        assert!(render_name("{{ ssm:x }}", &values()).is_err());
    }

    #[test]
    fn ami_names_follow_ec2s_rule() {
        assert!(check_ami_name("web 2026-01-01T00-00-00.000Z").is_ok());
        assert!(check_ami_name("ab").is_err());
        assert!(check_ami_name(&"a".repeat(129)).is_err());
        assert!(check_ami_name("web:1").unwrap_err().contains("':'"));
        assert!(check_name_template("web-{{ imagebuilder:buildDate }}").is_ok());
        assert!(check_name_template("a:{{ imagebuilder:buildDate }}").is_err());
    }

    #[test]
    fn public_and_shared_amis_are_launchable() {
        let mut ami = Ami {
            arn: Ami::key("us-east-1", "111111111111", "ami-0123"),
            image_id: "ami-0123".into(),
            name: "n".into(),
            description: None,
            source_image: String::new(),
            build_id: String::new(),
            image_digest: None,
            os_version: None,
            platform: "Linux".into(),
            creation_date: 0,
            tags: BTreeMap::new(),
            launch_permission: LaunchPermissions::default(),
            kms_key_id: None,
            deprecation_time: None,
            exports: Vec::new(),
            disabled: false,
            last_launched: None,
        };
        assert!(ami.launchable_by("111111111111"));
        assert!(!ami.launchable_by("222222222222"));
        ami.launch_permission.user_ids.insert("222222222222".into());
        assert!(ami.launchable_by("222222222222"));
        assert!(!ami.launchable_by("333333333333"));
        ami.launch_permission.public = true;
        assert!(ami.launchable_by("333333333333"));
    }

    #[test]
    fn launch_permissions_add_and_remove() {
        let mut p = LaunchPermissions::default();
        let account = Grantee::Account("222222222222".into());
        let org = Grantee::Organization("arn:aws:organizations::1:organization/o-1".into());
        p.add(&account);
        p.add(&account);
        p.add(&Grantee::Public);
        p.add(&org);
        assert_eq!(
            p.grantees(),
            vec![Grantee::Public, account.clone(), org.clone()]
        );
        p.remove(&account);
        p.remove(&Grantee::Public);
        p.remove(&Grantee::OrganizationalUnit("nothing".into()));
        assert_eq!(p.grantees(), vec![org]);
    }

    #[test]
    fn deprecation_times_round_and_public_amis_get_two_years() {
        assert_eq!(round_to_minute(90_000), 120_000);
        assert_eq!(round_to_minute(89_999), 60_000);
        assert_eq!(round_to_minute(120_000), 120_000);
        // 2026-01-01T00:00:00Z plus 24 months.
        let created = 1_767_225_600_000;
        assert_eq!(add_months(created, 24), 1_830_297_600_000);
        let mut ami = Ami {
            arn: Ami::key("us-east-1", "111111111111", "ami-0123"),
            image_id: "ami-0123".into(),
            name: "n".into(),
            description: None,
            source_image: String::new(),
            build_id: String::new(),
            image_digest: None,
            os_version: None,
            platform: "Linux".into(),
            creation_date: created,
            tags: BTreeMap::new(),
            launch_permission: LaunchPermissions::default(),
            kms_key_id: None,
            deprecation_time: None,
            exports: Vec::new(),
            disabled: false,
            last_launched: None,
        };
        assert_eq!(ami.latest_deprecation(created), add_months(created, 120));
        ami.make_public();
        assert_eq!(ami.deprecation_time, Some(1_830_297_600_000));
        assert_eq!(ami.latest_deprecation(created), 1_830_297_600_000);
        // An earlier deprecation time stays.
        ami.deprecation_time = Some(created + 60_000);
        ami.make_public();
        assert_eq!(ami.deprecation_time, Some(created + 60_000));
    }
}
