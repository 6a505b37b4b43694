//! The AMIs an AMI-type image is distributed as: one record per Region and account
//! ([`Image::ami_destinations`]), each named from its template, tagged and shared as its
//! distribution entry says, then each entry's post-copy steps (SSM parameters, launch
//! templates, licenses, fast launch, the S3 export).
//!
//! A Region that fails does not stop the others, as on AWS; the image then fails with a
//! `failureContext` that names every Region (and account) and the step. AMI ids are derived
//! from the build, the Region and the account, so RetryImage re-runs this and finds what it
//! already made instead of making it twice.

use crate::logs::BuildLog;
use crate::Shared;
use kiln_core::amis;
use kiln_domain::resources::ami::{
    check_ami_name, render_name, Ami, AmiDestination, AmiOutput, NameValues,
};
use kiln_domain::resources::distribution::{Distribution, SsmDataType};
use kiln_domain::resources::image::{
    DistributionFailure, Image, ImageStatus, RecipeSnapshot, RegionFailure,
};
use kiln_store::TxnExt;

/// What distributing the AMIs of one image came to.
#[derive(Debug, Default)]
pub struct Distributed {
    /// The AMIs made (or found made by an earlier attempt), in destination order.
    pub amis: Vec<AmiOutput>,
    /// Every Region (and account) that failed.
    pub failures: Vec<RegionFailure>,
    /// The image stopped being this build's (cancelled or deleted) before the end.
    pub cancelled: bool,
    /// How many AMIs the distribution was to make.
    pub total: usize,
}

impl Distributed {
    /// The `distributionFailure` of the image's failure context, if anything failed.
    pub fn failure(&self) -> Option<DistributionFailure> {
        if self.failures.is_empty() {
            return None;
        }
        let regions = self
            .failures
            .iter()
            .map(|f| match &f.target_account_id {
                Some(a) => format!("{} ({a}): {}", f.region, f.error_message),
                None => format!("{}: {}", f.region, f.error_message),
            })
            .collect::<Vec<_>>()
            .join("; ");
        Some(DistributionFailure {
            error_message: format!(
                "{} of {} distributions failed: {regions}",
                self.failures.len(),
                self.total
            ),
            region_failures: self.failures.clone(),
        })
    }
}

/// The post-copy steps of the API's `ImageConfigurationStep`.
const PUT_SSM_PARAMETERS: &str = "PUT_SSM_PARAMETERS";
const UPDATE_LAUNCH_TEMPLATES: &str = "UPDATE_LAUNCH_TEMPLATES";
const UPDATE_FAST_LAUNCH: &str = "UPDATE_FAST_LAUNCH_CONFIGURATIONS";
const ASSOCIATE_LICENSES: &str = "ASSOCIATE_LICENSES";
const EXPORT_AMI: &str = "EXPORT_AMI";

fn failed(
    region: &str,
    account: Option<&str>,
    step: Option<&str>,
    message: String,
) -> RegionFailure {
    RegionFailure {
        region: region.to_string(),
        status: "FAILED".to_string(),
        image_configuration_step: step.map(str::to_string),
        error_message: message,
        target_account_id: account.map(str::to_string),
    }
}

/// The id of the AMI `destination` makes: the build Region's own AMI keeps the id the image has
/// always answered to (`Image::ami_id`); copies get ids derived from the build, Region and
/// account.
pub fn ami_id(image: &Image, destination: &AmiDestination) -> String {
    if destination.region == image.arn.region && destination.account == image.owner {
        image.ami_id()
    } else {
        amis::derived_id(
            "ami-",
            &[&image.build_id, &destination.region, &destination.account],
        )
    }
}

/// Makes the AMIs of `image` (its build is `digest` in the store, its OS `os_version`), then
/// runs each entry's post-copy steps. `still_ours` says whether the image is still this
/// build's; it is asked before each Region.
pub fn distribute(
    shared: &Shared,
    image: &Image,
    digest: &str,
    os_version: Option<&str>,
    log: &BuildLog,
    still_ours: &dyn Fn() -> bool,
) -> Distributed {
    let recipe = image.snapshot.as_ref().map(|s| &s.recipe);
    // An imported image has no recipe: its AMI takes the import's description.
    let (recipe_description, recipe_tags) = match recipe {
        Some(RecipeSnapshot::Image(r)) => (r.description.as_deref(), r.ami_tags.clone()),
        _ => (
            image.import.as_ref().and_then(|i| i.description.as_deref()),
            Default::default(),
        ),
    };
    let destinations = image.ami_destinations(recipe_description);
    let values = NameValues::new(image.date_created, image.arn.build.unwrap_or(1));
    let now = shared.core.clock.now_millis();
    let contents = image.contents();
    let mut out = Distributed {
        total: destinations.len(),
        ..Distributed::default()
    };
    let mut made: Vec<(AmiDestination, String)> = Vec::new();
    for destination in &destinations {
        if !still_ours() {
            out.cancelled = true;
            return out;
        }
        let id = ami_id(image, destination);
        let mut tags = destination.tags.clone();
        if destination.region == image.arn.region && destination.account == image.owner {
            // The recipe's amiTags go on the AMI of the build (AWS: "applied to the AMI that
            // Image Builder creates during the Build phase"); the entry's win on conflicts.
            for (k, v) in &recipe_tags {
                tags.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let account = destination.account.as_str();
        let copy_of = (account != image.owner).then_some(account);
        let name = match render_name(&destination.name_template, &values)
            .and_then(|n| check_ami_name(&n).map(|()| n))
        {
            Ok(name) => name,
            Err(e) => {
                out.failures
                    .push(failed(&destination.region, copy_of, None, e));
                continue;
            }
        };
        let ami = Ami {
            arn: Ami::key(&destination.region, account, &id),
            image_id: id.clone(),
            name: name.clone(),
            description: destination.description.clone(),
            source_image: contents.image.clone(),
            build_id: contents.build_id.clone(),
            image_digest: Some(digest.to_string()),
            os_version: os_version.map(str::to_string),
            platform: image.platform.clone(),
            creation_date: now,
            tags,
            launch_permission: destination.launch_permission.clone(),
            kms_key_id: destination.kms_key_id.clone(),
            deprecation_time: None,
            exports: Vec::new(),
            disabled: false,
            last_launched: None,
        };
        let written = shared.core.store.write(|tx| {
            // Another account's AMIs (and, after them, its SSM parameters: they are written
            // only where an AMI was) need its consent, as AWS's cross-account role.
            if let Err(why) = kiln_core::iam_roles::may_distribute(tx, account, &image.owner)? {
                return Ok(Err(format!("AccessDenied: {why}")));
            }
            if let Some(other) = amis::name_taken(tx, account, &destination.region, &name, &id)? {
                return Ok(Err(format!(
                    "InvalidAMIName.Duplicate: AMI name '{name}' is already in use by AMI {other} \
                     (AMI names are unique per account and Region; use {{{{ imagebuilder:buildDate }}}} in the name)"
                )));
            }
            // A retry finds its earlier AMI: keep its creation date, tags and sharing as EC2
            // calls may have changed them since.
            let earlier: Option<Ami> = tx.get(&ami.arn.to_string())?;
            let ami = match earlier {
                Some(earlier) => Ami {
                    creation_date: earlier.creation_date,
                    tags: earlier.tags,
                    launch_permission: earlier.launch_permission,
                    deprecation_time: earlier.deprecation_time,
                    exports: earlier.exports,
                    ..ami.clone()
                },
                None => ami.clone(),
            };
            let mut ami = ami;
            if ami.launch_permission.public {
                // As when ModifyImageAttribute makes an AMI public: deprecated two years on.
                ami.make_public();
            }
            amis::put(tx, &ami)?;
            Ok::<_, kiln_core::error::CoreError>(Ok(()))
        });
        match written {
            Ok(Ok(Ok(()))) => {
                log.event(&format!(
                    "AMI {id} '{name}' in {} for account {account}",
                    destination.region
                ));
                out.amis.push(AmiOutput {
                    region: destination.region.clone(),
                    image_id: id.clone(),
                    name,
                    description: destination.description.clone(),
                    account_id: account.to_string(),
                });
                made.push((destination.clone(), id));
            }
            Ok(Ok(Err(message))) => {
                out.failures
                    .push(failed(&destination.region, copy_of, None, message));
            }
            Ok(Err(e)) => out.failures.push(failed(
                &destination.region,
                copy_of,
                None,
                format!("recording the AMI: {e}"),
            )),
            Err(e) => out.failures.push(failed(
                &destination.region,
                copy_of,
                None,
                format!("recording the AMI: {e}"),
            )),
        }
    }
    let entries: Vec<&Distribution> = image
        .snapshot
        .iter()
        .flat_map(|s| s.distribution.iter())
        .flat_map(|d| d.distributions.iter())
        .collect();
    let has_post_copy = entries.iter().any(|d| has_post_copy_steps(d));
    if has_post_copy && out.failures.is_empty() {
        let arn = image.arn.to_string();
        if !crate::run::transition(shared, &arn, ImageStatus::Integrating, None, |_| {}) {
            out.cancelled = true;
            return out;
        }
        log.event("stage integrate started");
    }
    for (i, entry) in entries.iter().enumerate() {
        if !still_ours() {
            out.cancelled = true;
            return out;
        }
        // The AMIs this entry made, by account.
        let ids: Vec<(&str, &str)> = made
            .iter()
            .filter(|(d, _)| d.entry == Some(i))
            .map(|(d, id)| (d.account.as_str(), id.as_str()))
            .collect();
        let Some(&(_, own_id)) = ids.iter().find(|(a, _)| *a == image.owner) else {
            continue; // its copy failed, already reported
        };
        if let Err(f) = post_copy(shared, image, entry, own_id, &ids, log) {
            out.failures.push(f);
        }
    }
    out
}

fn has_post_copy_steps(d: &Distribution) -> bool {
    d.ssm_parameter_configurations
        .as_ref()
        .is_some_and(|v| !v.is_empty())
        || d.launch_template_configurations
            .as_ref()
            .is_some_and(|v| !v.is_empty())
        || d.license_configuration_arns
            .as_ref()
            .is_some_and(|v| !v.is_empty())
        || d.fast_launch_configurations
            .as_ref()
            .is_some_and(|v| !v.is_empty())
        || d.s3_export_configuration.is_some()
}

/// One entry's steps after its AMIs exist, in the order of the API's `ImageConfigurationStep`.
fn post_copy(
    shared: &Shared,
    image: &Image,
    entry: &Distribution,
    own_id: &str,
    ids: &[(&str, &str)],
    log: &BuildLog,
) -> Result<(), RegionFailure> {
    let region = entry.region.as_str();
    let fail = |step: &str, account: Option<&str>, message: String| {
        failed(region, account, Some(step), message)
    };
    let targets: Vec<&str> = ids.iter().map(|(a, _)| *a).collect();
    for arn in entry.license_configuration_arns.iter().flatten() {
        // Kiln has no License Manager: the association is recorded in the image's snapshot and
        // the log, and nothing enforces the license.
        log.event(&format!(
            "{ASSOCIATE_LICENSES}: {own_id} in {region} recorded with license configuration {arn} (Kiln has no License Manager; nothing enforces it)"
        ));
    }
    for lt in entry.launch_template_configurations.iter().flatten() {
        let account = lt.account_id.as_deref().unwrap_or(&image.owner);
        if !targets.contains(&account) {
            return Err(fail(
                UPDATE_LAUNCH_TEMPLATES,
                Some(account),
                format!(
                    "launch template {} is in account {account}, which this distribution gives no AMI in {region}; add it to targetAccountIds",
                    lt.launch_template_id
                ),
            ));
        }
        log.event(&format!(
            "{UPDATE_LAUNCH_TEMPLATES}: launch template {} of account {account} in {region} recorded for {own_id} (set as default version: {}; Kiln has no EC2 launch templates to update)",
            lt.launch_template_id,
            lt.set_default_version.unwrap_or(true)
        ));
    }
    for fl in entry.fast_launch_configurations.iter().flatten() {
        if fl.enabled && !image.platform.eq_ignore_ascii_case("windows") {
            return Err(fail(
                UPDATE_FAST_LAUNCH,
                fl.account_id.as_deref(),
                format!(
                    "fast launch is for Windows AMIs; {own_id} is a {} AMI (set enabled to false or remove the entry)",
                    image.platform
                ),
            ));
        }
    }
    let now = shared.core.clock.now_millis();
    for p in entry.ssm_parameter_configurations.iter().flatten() {
        let account = p.ami_account_id.as_deref().unwrap_or(&image.owner);
        let Some(&(_, id)) = ids.iter().find(|(a, _)| *a == account) else {
            return Err(fail(
                PUT_SSM_PARAMETERS,
                Some(account),
                format!(
                    "the parameter {} names account {account}, which received no AMI in {region}",
                    p.parameter_name
                ),
            ));
        };
        let data_type = match p.data_type {
            Some(SsmDataType::AwsEc2Image) => "aws:ec2:image",
            Some(SsmDataType::Text) | None => "text",
        };
        let written = shared.core.store.write(|tx| {
            // Checked again here: the consent may have been withdrawn since the copy.
            if let Err(why) = kiln_core::iam_roles::may_distribute(tx, account, &image.owner)? {
                return Ok(Err(format!("AccessDenied: {why}")));
            }
            amis::put_parameter(tx, account, region, &p.parameter_name, id, data_type, now).map(Ok)
        });
        if let Err(e) = written
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .and_then(|r| r)
        {
            return Err(fail(
                PUT_SSM_PARAMETERS,
                Some(account),
                format!("writing the parameter {}: {e}", p.parameter_name),
            ));
        }
        log.event(&format!(
            "{PUT_SSM_PARAMETERS}: {} = {id} ({data_type}) in {region} for account {account}",
            p.parameter_name
        ));
    }
    if let Some(export) = &entry.s3_export_configuration {
        export_step(shared, &image.owner, region, own_id, export, log)
            .map_err(|e| fail(EXPORT_AMI, None, e))?;
    }
    Ok(())
}

/// Exports the AMI `id` of `owner` in `region` to S3 and records the export on it (EC2's
/// DescribeExportImageTasks answers from that record).
fn export_step(
    shared: &Shared,
    owner: &str,
    region: &str,
    id: &str,
    export: &kiln_domain::resources::distribution::S3Export,
    log: &BuildLog,
) -> Result<(), String> {
    let key = Ami::key(region, owner, id).to_string();
    let ami: Ami = shared
        .core
        .store
        .read(|tx| tx.get::<Ami>(&key))
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))?
        .ok_or_else(|| format!("the AMI {id} was deregistered before its export"))?;
    let record = crate::exports::export_to_s3(shared, &ami, export, log)?;
    log.event(&format!(
        "{EXPORT_AMI}: {id} written to s3://{}/{} ({} bytes)",
        record.s3_bucket, record.s3_key, record.size
    ));
    let recorded = shared.core.store.write(|tx| {
        let Some(mut ami) = tx.get::<Ami>(&key)? else {
            return Ok(());
        };
        ami.exports.retain(|e| e.task_id != record.task_id);
        ami.exports.push(record.clone());
        tx.put(&ami)
    });
    recorded
        .and_then(|r| r)
        .map_err(|e| format!("recording the export of {id}: {e}"))
}
