//! Which image a recipe's parent names, among the images Kiln built or manages. The API uses it
//! to record what an image is built from (for the schedule's dependency check) and the build
//! worker to find the parent's contents, so both agree on what `x` filters pick.

use kiln_domain::arn::{Arn, ResourceKind};
use kiln_domain::resources::image::{Image, ImageStatus};
use kiln_domain::resources::managed;
use kiln_domain::resources::parent::ParentSource;
use kiln_domain::version::{SemVer, VersionFilter};
use kiln_store::{ListQuery, Txn, TxnExt};

/// The images of one account and region, optionally of one name.
fn images(
    tx: &mut dyn Txn,
    account: &str,
    region: &str,
    name: Option<&str>,
) -> Result<Vec<Image>, String> {
    tx.list::<Image>(&ListQuery {
        account: account.to_string(),
        region: region.to_string(),
        kind: ResourceKind::Image,
        name: name.map(str::to_string),
        after: None,
    })
    .map_err(|e| format!("reading images: {e}"))
}

/// The newest AVAILABLE image an ARN (version, `x` filter or build) matches, which must belong
/// to `account` and `region` (those of the image being built).
pub fn newest_available(
    tx: &mut dyn Txn,
    account: &str,
    region: &str,
    arn: &Arn,
) -> Result<Image, String> {
    if arn.account != account || arn.region != region {
        return Err(format!(
            "{arn} belongs to another account or region than the image being built"
        ));
    }
    let filter = match &arn.version {
        Some(v) => VersionFilter::parse(v).map_err(|e| e.message)?,
        None => VersionFilter::ANY,
    };
    let candidates: Vec<Image> = images(tx, account, region, Some(&arn.name))?
        .into_iter()
        .filter(|i| i.status == ImageStatus::Available)
        .filter(|i| arn.build.is_none() || i.arn.build == arn.build)
        .collect();
    let versions = candidates.iter().filter_map(|i| {
        Some((
            SemVer::parse(i.arn.version.as_deref()?).ok()?,
            i.arn.build.unwrap_or(0),
        ))
    });
    let (version, build) = filter
        .newest(versions)
        .ok_or_else(|| format!("no AVAILABLE image matches {arn}"))?;
    let version = version.to_string();
    candidates
        .into_iter()
        .find(|i| i.arn.version.as_deref() == Some(version.as_str()) && i.arn.build == Some(build))
        .ok_or_else(|| format!("no AVAILABLE image matches {arn}"))
}

/// The AVAILABLE image of `account` in `region` that answers to an `ami-` id.
pub fn by_ami(tx: &mut dyn Txn, account: &str, region: &str, id: &str) -> Result<Image, String> {
    images(tx, account, region, None)?
        .into_iter()
        .find(|i| i.output_resources.iter().any(|o| o == id))
        .filter(|i| i.status == ImageStatus::Available)
        .ok_or_else(|| {
            format!("no AVAILABLE image of account {account} in {region} has the id {id}")
        })
}

/// The build version ARN a parent reference resolves to now, for Image Builder image ARNs
/// (managed or built by Kiln) and `ami-` ids; `None` for other forms, or when nothing matches
/// yet (the build then fails with the reason, as it would have).
pub fn resolved_parent(
    tx: &mut dyn Txn,
    account: &str,
    region: &str,
    parent: &str,
) -> Result<Option<String>, String> {
    Ok(match ParentSource::parse(parent) {
        ParentSource::ImageBuilderImage(arn) if arn.account == managed::OWNER => {
            managed::find(&arn).map(|m| m.arn(&arn.region).to_string())
        }
        ParentSource::ImageBuilderImage(arn) => newest_available(tx, account, region, &arn)
            .ok()
            .map(|i| i.arn.to_string()),
        ParentSource::Ami(id) => by_ami(tx, account, region, &id)
            .ok()
            .map(|i| i.arn.to_string()),
        _ => None,
    })
}
