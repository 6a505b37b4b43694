//! DescribeImages, DeregisterImage, EnableImageDeprecation and DisableImageDeprecation.
//!
//! An AMI is shown as EC2 shows an EBS-backed HVM AMI: available, x86_64 (Kiln's instance
//! types), one root volume whose snapshot id is derived from the AMI's id
//! (`kiln_core::amis::snapshot_id`), encrypted when distribution named a KMS key.

use super::error::Ec2Error;
use super::filters::{self, Filter};
use super::form::Params;
use super::xml::Xml;
use super::{check_image_id, owned_ami, Call, Operation};
use crate::convert::date;
use kiln_core::amis;
use kiln_domain::resources::ami::{self, round_to_minute, Ami};
use kiln_store::Txn;

/// The filters of DescribeImages that Kiln's AMIs have values for.
const FILTERS: [&str; 21] = [
    "architecture",
    "block-device-mapping.delete-on-termination",
    "block-device-mapping.device-name",
    "block-device-mapping.encrypted",
    "block-device-mapping.snapshot-id",
    "creation-date",
    "description",
    "ena-support",
    "hypervisor",
    "image-id",
    "image-type",
    "is-public",
    "manifest-location",
    "name",
    "owner-id",
    "platform",
    "root-device-name",
    "root-device-type",
    "state",
    "tag-key",
    "virtualization-type",
];

/// Filters EC2 documents for attributes Kiln's AMIs never have (no kernels, product codes,
/// aliases, volume sizes...): accepted, and they match no AMI, as on EC2 for an AMI without
/// the attribute.
const ABSENT_FILTERS: [&str; 14] = [
    "block-device-mapping.volume-size",
    "block-device-mapping.volume-type",
    "boot-mode",
    "kernel-id",
    "owner-alias",
    "product-code",
    "product-code.type",
    "public-ssm-parameter-name",
    "ramdisk-id",
    "source-image-id",
    "source-image-region",
    "source-instance-id",
    "sriov-net-support",
    "state-reason-code",
];

/// Owner aliases EC2 knows; none owns an AMI in Kiln.
const OWNER_ALIASES: [&str; 3] = ["amazon", "aws-marketplace", "aws-backup-vault"];

/// EC2's `imageState`: `disabled` after a lifecycle DISABLE action.
fn state(a: &Ami) -> &'static str {
    if a.disabled {
        "disabled"
    } else {
        "available"
    }
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// What EC2 shows of an AMI that its record does not hold.
struct Shown<'a> {
    ami: &'a Ami,
    windows: bool,
    snapshot: String,
}

impl<'a> Shown<'a> {
    fn new(ami: &'a Ami) -> Shown<'a> {
        Shown {
            ami,
            windows: ami.platform.eq_ignore_ascii_case("windows"),
            snapshot: amis::snapshot_id(&ami.image_id),
        }
    }

    /// Windows AMIs boot from `/dev/sda1`, Linux ones (Amazon Linux's convention) from
    /// `/dev/xvda`.
    fn root_device(&self) -> &'static str {
        if self.windows {
            "/dev/sda1"
        } else {
            "/dev/xvda"
        }
    }

    fn platform_details(&self) -> &'static str {
        if self.windows {
            "Windows"
        } else {
            "Linux/UNIX"
        }
    }

    fn usage_operation(&self) -> &'static str {
        if self.windows {
            "RunInstances:0002"
        } else {
            "RunInstances"
        }
    }

    /// EC2's `imageLocation` of an EBS AMI: `<owner>/<name>`.
    fn location(&self) -> String {
        format!("{}/{}", self.ami.owner(), self.ami.name)
    }

    /// The AMI's values for a filter name (none: it has no such attribute).
    fn values(&self, filter: &str) -> Vec<String> {
        let a = self.ami;
        let one = |s: &str| vec![s.to_string()];
        let flag = |b: bool| vec![b.to_string()];
        if let Some(key) = filter.strip_prefix("tag:") {
            return a.tags.get(key).cloned().into_iter().collect();
        }
        match filter {
            "architecture" => one(ami::ARCHITECTURE),
            "block-device-mapping.delete-on-termination" => flag(true),
            "block-device-mapping.device-name" | "root-device-name" => one(self.root_device()),
            "block-device-mapping.encrypted" => flag(a.kms_key_id.is_some()),
            "block-device-mapping.snapshot-id" => one(&self.snapshot),
            "creation-date" => one(&date(a.creation_date)),
            "description" => a.description.clone().into_iter().collect(),
            "ena-support" => flag(true),
            "hypervisor" => one("xen"),
            "image-id" => one(&a.image_id),
            "image-type" => one("machine"),
            "is-public" => flag(a.launch_permission.public),
            "manifest-location" => vec![self.location()],
            "name" => one(&a.name),
            "owner-id" => one(a.owner()),
            "platform" if self.windows => one("windows"),
            "root-device-type" => one("ebs"),
            "state" => one(state(a)),
            "tag-key" => a.tags.keys().cloned().collect(),
            "virtualization-type" => one("hvm"),
            _ => Vec::new(),
        }
    }

    /// One `<item>` of `imagesSet`, in the order EC2 writes its members.
    fn write(&self, x: &mut Xml) {
        let a = self.ami;
        x.text("imageId", &a.image_id);
        x.text("imageLocation", &self.location());
        x.text("imageState", state(a));
        x.text("imageOwnerId", a.owner());
        x.text("creationDate", &date(a.creation_date));
        x.boolean("isPublic", a.launch_permission.public);
        x.text("architecture", ami::ARCHITECTURE);
        x.text("imageType", "machine");
        if self.windows {
            x.text("platform", "windows");
        }
        x.text("name", &a.name);
        x.optional("description", a.description.as_deref());
        x.text("rootDeviceType", "ebs");
        x.text("rootDeviceName", self.root_device());
        x.element("blockDeviceMapping", |x| {
            x.element("item", |x| {
                x.text("deviceName", self.root_device());
                x.element("ebs", |x| {
                    x.text("snapshotId", &self.snapshot);
                    x.boolean("deleteOnTermination", true);
                    x.boolean("encrypted", a.kms_key_id.is_some());
                    x.optional("kmsKeyId", a.kms_key_id.as_deref());
                });
            });
        });
        x.text("virtualizationType", "hvm");
        if !a.tags.is_empty() {
            let tags: Vec<(&String, &String)> = a.tags.iter().collect();
            x.list("tagSet", &tags, |x, (k, v)| {
                x.text("key", k);
                x.text("value", v);
            });
        }
        x.text("hypervisor", "xen");
        x.boolean("enaSupport", true);
        x.text("platformDetails", self.platform_details());
        x.text("usageOperation", self.usage_operation());
        if let Some(t) = a.deprecation_time {
            x.text("deprecationTime", &date(t));
        }
    }
}

/// Who an `ExecutableBy.N` value names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Executable {
    /// `self` or the caller's own account id: AMIs it owns or that are shared with it.
    Caller,
    /// `all`: public AMIs.
    All,
    /// Another account: the caller's AMIs shared with that account.
    Account(String),
}

pub(crate) struct DescribeImages {
    image_ids: Vec<String>,
    owners: Vec<String>,
    executable_by: Vec<String>,
    filters: Vec<Filter>,
    include_deprecated: bool,
    max_results: Option<usize>,
    next_token: Option<String>,
}

impl Operation for DescribeImages {
    fn parse(params: &mut Params) -> Result<Self, Ec2Error> {
        let image_ids = params.list("ImageId")?;
        for id in &image_ids {
            check_image_id(id)?;
        }
        let owners = params.list("Owner")?;
        for (i, o) in owners.iter().enumerate() {
            if o != "self" && !OWNER_ALIASES.contains(&o.as_str()) && !is_account_id(o) {
                return Err(Ec2Error::user_id_malformed(&format!("Owner.{}", i + 1), o));
            }
        }
        let executable_by = params.list("ExecutableBy")?;
        for (i, e) in executable_by.iter().enumerate() {
            if e != "self" && e != "all" && !is_account_id(e) {
                return Err(Ec2Error::user_id_malformed(
                    &format!("ExecutableBy.{}", i + 1),
                    e,
                ));
            }
        }
        let filters = filters::parse(params, "Filter")?;
        for f in &filters {
            let known = FILTERS.contains(&f.name.as_str())
                || ABSENT_FILTERS.contains(&f.name.as_str())
                || f.name.strip_prefix("tag:").is_some_and(|k| !k.is_empty());
            if !known {
                return Err(Ec2Error::invalid_value(format!(
                    "The filter '{}' is invalid for DescribeImages; Kiln's AMIs answer to {}, tag:<key>, and {} (which none of them has)",
                    f.name,
                    FILTERS.join(", "),
                    ABSENT_FILTERS.join(", ")
                )));
            }
        }
        let include_deprecated = params.boolean("IncludeDeprecated")?.unwrap_or(false);
        // Kiln never disables AMIs, so including disabled ones changes nothing.
        let _include_disabled = params.boolean("IncludeDisabled")?;
        let max_results = params.integer("MaxResults")?;
        if let Some(m) = max_results {
            if !image_ids.is_empty() {
                return Err(Ec2Error::combination(
                    "The parameter imageIdsSet cannot be used with the parameter maxResults",
                ));
            }
            if !(5..=1000).contains(&m) {
                return Err(Ec2Error::invalid_value(format!(
                    "MaxResults: {m} is not a valid value; it must be between 5 and 1000"
                )));
            }
        }
        Ok(DescribeImages {
            image_ids,
            owners,
            executable_by,
            filters,
            include_deprecated,
            max_results: max_results.map(|m| m as usize),
            next_token: params.string("NextToken"),
        })
    }

    fn run(&self, call: &Call, tx: &mut dyn Txn) -> Result<String, Ec2Error> {
        call.proceed()?;
        let after = call.page_start(self.next_token.as_deref())?;
        let caller = call.account();
        let mut found = amis::launchable(tx, caller, call.region())?;
        if !self.image_ids.is_empty() {
            let missing: Vec<String> = self
                .image_ids
                .iter()
                .filter(|id| !found.iter().any(|a| &a.image_id == *id))
                .cloned()
                .collect();
            if !missing.is_empty() {
                return Err(Ec2Error::ami_not_found(&missing));
            }
            found.retain(|a| self.image_ids.contains(&a.image_id));
        } else if !self.include_deprecated {
            // A deprecated AMI is hidden from its users' listings, not from its owner's, nor
            // from a call that names it (the User Guide, "Deprecate an AMI").
            found.retain(|a| a.owner() == caller || !a.deprecated_at(call.now()));
        }
        let executable: Vec<Executable> = self
            .executable_by
            .iter()
            .map(|e| match e.as_str() {
                "all" => Executable::All,
                e if e == "self" || e == caller => Executable::Caller,
                e => Executable::Account(e.to_string()),
            })
            .collect();
        found.retain(|a| {
            (self.owners.is_empty()
                || self.owners.iter().any(|o| match o.as_str() {
                    "self" => a.owner() == caller,
                    o => a.owner() == o,
                }))
                && (executable.is_empty()
                    || executable.iter().any(|e| match e {
                        Executable::Caller => {
                            a.owner() == caller || a.launch_permission.user_ids.contains(caller)
                        }
                        Executable::All => a.launch_permission.public,
                        // Only the owner may know whom its AMI is shared with.
                        Executable::Account(other) => {
                            a.owner() == caller && a.launch_permission.user_ids.contains(other)
                        }
                    }))
                && filters::accept(&self.filters, |name| Shown::new(a).values(name))
        });
        let key = |a: &Ami| format!("{} {}", a.image_id, a.owner());
        found.sort_by_key(key);
        if let Some(after) = &after {
            found.retain(|a| key(a) > *after);
        }
        let (page, next) = call.page(found, self.max_results, key);
        let mut x = call.response();
        x.list("imagesSet", &page, |x, a| Shown::new(a).write(x));
        x.optional("nextToken", next.as_deref());
        Ok(x.finish())
    }
}

pub(crate) struct DeregisterImage {
    image_id: String,
    delete_snapshots: bool,
}

impl Operation for DeregisterImage {
    fn parse(params: &mut Params) -> Result<Self, Ec2Error> {
        let image_id = params.required("ImageId")?;
        check_image_id(&image_id)?;
        Ok(DeregisterImage {
            image_id,
            delete_snapshots: params
                .boolean("DeleteAssociatedSnapshots")?
                .unwrap_or(false),
        })
    }

    fn run(&self, call: &Call, tx: &mut dyn Txn) -> Result<String, Ec2Error> {
        let ami = owned_ami(call, tx, &self.image_id, "deregister it")?;
        call.proceed()?;
        amis::remove(tx, &ami)?;
        let mut x = call.response();
        x.boolean("return", true);
        if self.delete_snapshots {
            // The AMI's snapshot is a view of the AMI (no other AMI has it): it goes with it.
            x.list(
                "deleteSnapshotResultSet",
                &[amis::snapshot_id(&ami.image_id)],
                |x, s| {
                    x.text("snapshotId", s);
                    x.text("returnCode", "success");
                },
            );
        }
        Ok(x.finish())
    }
}

/// `DeprecateAt`: an RFC 3339 time (botocore sends `2026-06-15T13:17:00Z`).
fn parse_time(parameter: &str, text: &str) -> Result<i64, Ec2Error> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            Ec2Error::invalid_value(format!(
                "{parameter}: '{text}' is not a date and time in the form YYYY-MM-DDTHH:MM:SSZ ({e})"
            ))
        })
}

pub(crate) struct EnableImageDeprecation {
    image_id: String,
    deprecate_at: i64,
}

impl Operation for EnableImageDeprecation {
    fn parse(params: &mut Params) -> Result<Self, Ec2Error> {
        let image_id = params.required("ImageId")?;
        check_image_id(&image_id)?;
        let at = params.required("DeprecateAt")?;
        Ok(EnableImageDeprecation {
            image_id,
            deprecate_at: round_to_minute(parse_time("DeprecateAt", &at)?),
        })
    }

    fn run(&self, call: &Call, tx: &mut dyn Txn) -> Result<String, Ec2Error> {
        let mut ami = owned_ami(call, tx, &self.image_id, "deprecate it")?;
        if self.deprecate_at < call.now() {
            return Err(Ec2Error::invalid_value(format!(
                "DeprecateAt: {} (rounded to the minute) is in the past",
                date(self.deprecate_at)
            )));
        }
        let latest = ami.latest_deprecation(call.now());
        if self.deprecate_at > latest {
            let why = if ami.launch_permission.public {
                "two years after the creation of a public AMI"
            } else {
                "10 years from now"
            };
            return Err(Ec2Error::invalid_value(format!(
                "DeprecateAt: {} is later than {} ({why})",
                date(self.deprecate_at),
                date(latest)
            )));
        }
        call.proceed()?;
        ami.deprecation_time = Some(self.deprecate_at);
        amis::put(tx, &ami)?;
        Ok(call.returned_true())
    }
}

pub(crate) struct DisableImageDeprecation {
    image_id: String,
}

impl Operation for DisableImageDeprecation {
    fn parse(params: &mut Params) -> Result<Self, Ec2Error> {
        let image_id = params.required("ImageId")?;
        check_image_id(&image_id)?;
        Ok(DisableImageDeprecation { image_id })
    }

    fn run(&self, call: &Call, tx: &mut dyn Txn) -> Result<String, Ec2Error> {
        let mut ami = owned_ami(call, tx, &self.image_id, "change its deprecation")?;
        if ami.launch_permission.public {
            // The User Guide: a public AMI's deprecation can only be cancelled after it is
            // made private.
            return Err(Ec2Error::new(
                "OperationNotPermitted",
                400,
                format!(
                    "{} is public: a public AMI is deprecated at most two years after its creation; make it private (ModifyImageAttribute) to cancel its deprecation",
                    ami.image_id
                ),
            ));
        }
        call.proceed()?;
        ami.deprecation_time = None;
        amis::put(tx, &ami)?;
        Ok(call.returned_true())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_domain::resources::ami::LaunchPermissions;
    use std::collections::BTreeMap;

    fn ami(windows: bool) -> Ami {
        Ami {
            arn: Ami::key("us-east-1", "111111111111", "ami-0123456789abcdef0"),
            image_id: "ami-0123456789abcdef0".into(),
            name: "web <1> & co".into(),
            description: Some("d".into()),
            source_image: String::new(),
            build_id: String::new(),
            image_digest: None,
            os_version: None,
            platform: if windows { "Windows" } else { "Linux" }.into(),
            creation_date: 1_767_225_600_000,
            tags: BTreeMap::from([("team".to_string(), "a&b".to_string())]),
            launch_permission: LaunchPermissions::default(),
            kms_key_id: Some("arn:aws:kms:us-east-1:111111111111:key/k".into()),
            deprecation_time: None,
            exports: Vec::new(),
            disabled: false,
            last_launched: None,
        }
    }

    #[test]
    fn items_carry_what_ec2_shows_of_an_ebs_ami() {
        let a = ami(false);
        let mut x = Xml::response("DescribeImages", "r");
        Shown::new(&a).write(&mut x);
        let xml = x.finish();
        for part in [
            "<imageId>ami-0123456789abcdef0</imageId>",
            "<imageLocation>111111111111/web &lt;1&gt; &amp; co</imageLocation>",
            "<imageState>available</imageState>",
            "<creationDate>2026-01-01T00:00:00.000Z</creationDate>",
            "<isPublic>false</isPublic>",
            "<rootDeviceName>/dev/xvda</rootDeviceName>",
            "<encrypted>true</encrypted><kmsKeyId>arn:aws:kms:us-east-1:111111111111:key/k</kmsKeyId>",
            "<tagSet><item><key>team</key><value>a&amp;b</value></item></tagSet>",
            "<platformDetails>Linux/UNIX</platformDetails><usageOperation>RunInstances</usageOperation>",
        ] {
            assert!(xml.contains(part), "{part} missing from {xml}");
        }
        assert!(!xml.contains("<platform>"));
        assert!(!xml.contains("deprecationTime"));
        let w = ami(true);
        let mut x = Xml::response("DescribeImages", "r");
        Shown::new(&w).write(&mut x);
        let xml = x.finish();
        assert!(xml.contains("<platform>windows</platform>"));
        assert!(xml.contains("<rootDeviceName>/dev/sda1</rootDeviceName>"));
        assert!(xml.contains("RunInstances:0002"));
    }

    #[test]
    fn filter_values() {
        let a = ami(false);
        let s = Shown::new(&a);
        assert_eq!(s.values("tag:team"), vec!["a&b"]);
        assert!(s.values("tag:other").is_empty());
        assert_eq!(s.values("tag-key"), vec!["team"]);
        assert_eq!(s.values("is-public"), vec!["false"]);
        assert!(s.values("platform").is_empty());
        assert!(s.values("owner-alias").is_empty());
        for f in FILTERS {
            if f != "platform" {
                assert!(!s.values(f).is_empty(), "{f} has a value");
            }
        }
    }

    #[test]
    fn describe_images_parameters_are_checked() {
        let parse = |pairs: &[(&str, &str)]| {
            DescribeImages::parse(&mut Params::from_pairs(pairs.iter().copied()))
        };
        let e = parse(&[("MaxResults", "4")]).err().unwrap();
        assert!(e.message.contains("between 5 and 1000"), "{e}");
        assert!(parse(&[("MaxResults", "1001")]).is_err());
        assert!(parse(&[("MaxResults", "5")]).is_ok());
        let e = parse(&[("MaxResults", "5"), ("ImageId.1", "ami-12345678")])
            .err()
            .unwrap();
        assert_eq!(e.code, "InvalidParameterCombination");
        let e = parse(&[("Filter.1.Name", "colour"), ("Filter.1.Value.1", "x")])
            .err()
            .unwrap();
        assert!(e.message.contains("'colour'"), "{e}");
        assert!(parse(&[("Filter.1.Name", "tag:Team"), ("Filter.1.Value.1", "x")]).is_ok());
        assert!(parse(&[("Filter.1.Name", "tag:"), ("Filter.1.Value.1", "x")]).is_err());
        let e = parse(&[("Owner.1", "someone")]).err().unwrap();
        assert_eq!(e.code, "InvalidUserID.Malformed");
        assert!(e.message.starts_with("Owner.1:"));
        assert!(parse(&[("Owner.1", "amazon"), ("Owner.2", "self")]).is_ok());
        assert!(parse(&[("ExecutableBy.1", "everyone")]).is_err());
        assert_eq!(
            parse(&[("ImageId.1", "ami-x")]).err().unwrap().code,
            "InvalidAMIID.Malformed"
        );
    }

    #[test]
    fn deprecation_times_parse() {
        assert_eq!(
            parse_time("DeprecateAt", "2026-01-01T00:00:00Z").unwrap(),
            1_767_225_600_000
        );
        assert_eq!(
            parse_time("DeprecateAt", "2026-01-01T00:00:29.500Z").unwrap(),
            1_767_225_629_500
        );
        let e = parse_time("DeprecateAt", "tomorrow").unwrap_err();
        assert!(e.message.starts_with("DeprecateAt:"));
    }
}
