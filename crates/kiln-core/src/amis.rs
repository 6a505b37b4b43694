//! AMIs in the store (`kiln_domain::resources::ami`): the ones distribution writes, the ones a
//! caller may see and launch, and SSM parameters that hold their ids.
//!
//! EC2 is regional and AMIs are owned by accounts, but a caller may also see AMIs other accounts
//! shared with it or made public; those are found by reading the Region's AMIs of every account
//! (`rows_of_kind`), which is one indexed scan of the AMI rows.

use crate::error::{CoreError, CoreResult};
use kiln_domain::arn::ResourceKind;
use kiln_domain::resources::ami::Ami;
use kiln_domain::resources::Millis;
use kiln_store::{ListQuery, Row, StoreError, Txn, TxnExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How many rows one scan step reads.
const SCAN_PAGE: usize = 512;

fn decode(row: &Row) -> CoreResult<Ami> {
    serde_json::from_str(&row.body).map_err(|e| {
        CoreError::Storage(StoreError::Corrupt {
            arn: row.arn.clone(),
            message: e.to_string(),
        })
    })
}

/// `<prefix>0` and 16 hex digits from `parts`: ids that the same distribution of the same build
/// makes again when it is retried, so a retry finds the AMIs it already made.
pub fn derived_id(prefix: &str, parts: &[&str]) -> String {
    let digest = Sha256::digest(parts.join("/").as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{prefix}0{hex}")
}

/// The id of the EBS snapshot EC2 shows behind an AMI. Kiln keeps no snapshots (the image
/// store holds the contents under the build id), so it is derived from the AMI's id: the same
/// AMI always shows the same snapshot, and two AMIs never share one.
pub fn snapshot_id(image_id: &str) -> String {
    derived_id("snap-", &["snapshot", image_id])
}

/// Every AMI of every account and Region, in key order, through `keep`.
fn scan(tx: &mut dyn Txn, mut keep: impl FnMut(Ami)) -> CoreResult<()> {
    let mut after: Option<String> = None;
    loop {
        let rows = tx.rows_of_kind(ResourceKind::Ami, after.as_deref(), SCAN_PAGE)?;
        let full = rows.len() == SCAN_PAGE;
        after = rows.last().map(|r| r.arn.clone());
        for row in &rows {
            keep(decode(row)?);
        }
        if !full {
            return Ok(());
        }
    }
}

/// Every AMI in `region`, whoever owns it, in key order.
pub fn in_region(tx: &mut dyn Txn, region: &str) -> CoreResult<Vec<Ami>> {
    let mut out = Vec::new();
    scan(tx, |ami| {
        if ami.region() == region {
            out.push(ami);
        }
    })?;
    Ok(out)
}

/// The AMIs `owner` owns in `region`.
pub fn owned(tx: &mut dyn Txn, owner: &str, region: &str) -> CoreResult<Vec<Ami>> {
    Ok(tx.list::<Ami>(&ListQuery {
        account: owner.to_string(),
        region: region.to_string(),
        kind: ResourceKind::Ami,
        name: None,
        after: None,
    })?)
}

/// The AMIs `account` may launch in `region`: its own, those shared with it, public ones.
pub fn launchable(tx: &mut dyn Txn, account: &str, region: &str) -> CoreResult<Vec<Ami>> {
    Ok(in_region(tx, region)?
        .into_iter()
        .filter(|a| a.launchable_by(account))
        .collect())
}

/// The AMI `image_id` in `region`, whoever owns it.
pub fn find(tx: &mut dyn Txn, region: &str, image_id: &str) -> CoreResult<Option<Ami>> {
    Ok(in_region(tx, region)?
        .into_iter()
        .find(|a| a.image_id == image_id))
}

/// The AMI `image_id` as `account` sees it in `region`: `None` when it does not exist or the
/// account may not launch it (EC2 answers both the same way).
pub fn find_launchable(
    tx: &mut dyn Txn,
    account: &str,
    region: &str,
    image_id: &str,
) -> CoreResult<Option<Ami>> {
    Ok(find(tx, region, image_id)?.filter(|a| a.launchable_by(account)))
}

/// Whether `owner` already has an AMI called `name` in `region` (EC2 names are unique per
/// account and Region), other than `except`.
pub fn name_taken(
    tx: &mut dyn Txn,
    owner: &str,
    region: &str,
    name: &str,
    except: &str,
) -> CoreResult<Option<String>> {
    Ok(owned(tx, owner, region)?
        .into_iter()
        .find(|a| a.name == name && a.image_id != except)
        .map(|a| a.image_id))
}

/// The ids of the AMIs (any account, any Region) whose contents are the build `build_id`.
pub fn naming_build(tx: &mut dyn Txn, build_id: &str) -> CoreResult<Vec<String>> {
    let mut out = Vec::new();
    scan(tx, |ami| {
        if ami.build_id == build_id {
            out.push(ami.image_id);
        }
    })?;
    Ok(out)
}

/// Records that a build launched an instance from the AMIs `image_ids` of `region` at `now`
/// (EC2's last-launched time, which lifecycle policies' `lastLaunched` exclusion reads).
pub fn record_launch(
    tx: &mut dyn Txn,
    region: &str,
    image_ids: &[String],
    now: Millis,
) -> CoreResult<()> {
    for id in image_ids {
        if let Some(mut ami) = find(tx, region, id)? {
            if ami.last_launched.is_none_or(|t| t < now) {
                ami.last_launched = Some(now);
                put(tx, &ami)?;
            }
        }
    }
    Ok(())
}

pub fn put(tx: &mut dyn Txn, ami: &Ami) -> CoreResult<()> {
    Ok(tx.put(ami)?)
}

/// Deregisters an AMI: its record goes. When it was the last AMI naming contents whose
/// Image Builder image is gone (DeleteImage leaves AMIs), the image's ARN is queued: the worker
/// then finds no image there and removes the contents no record names any more.
pub fn remove(tx: &mut dyn Txn, ami: &Ami) -> CoreResult<()> {
    tx.delete_row(&ami.arn.to_string())?;
    if naming_build(tx, &ami.build_id)?.is_empty() && tx.get_row(&ami.source_image)?.is_none() {
        tx.enqueue_build(&ami.source_image, 0)?;
    }
    Ok(())
}

/// An SSM parameter (Kiln keeps the ones distribution writes; component documents read them
/// with `{{ aws:ssm:resolve(name) }}` and DistributeImage with `ssm:<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsmParameter {
    pub value: String,
    /// `text` or `aws:ec2:image`.
    pub data_type: String,
    pub version: u64,
    pub last_modified: Millis,
}

fn ssm_key(account: &str, region: &str, name: &str) -> String {
    // Parameter names may start with '/' or not; both spellings name the same parameter.
    format!(
        "kiln.ssm/{account}/{region}/{}",
        name.trim_start_matches('/')
    )
}

/// Creates or overwrites a parameter (a new version each time, as PutParameter with
/// `Overwrite` does).
pub fn put_parameter(
    tx: &mut dyn Txn,
    account: &str,
    region: &str,
    name: &str,
    value: &str,
    data_type: &str,
    now: Millis,
) -> CoreResult<()> {
    let key = ssm_key(account, region, name);
    let version = get_parameter(tx, account, region, name)?.map_or(1, |p| p.version + 1);
    let parameter = SsmParameter {
        value: value.to_string(),
        data_type: data_type.to_string(),
        version,
        last_modified: now,
    };
    let text = serde_json::to_string(&parameter)
        .map_err(|e| CoreError::Internal(format!("encoding an SSM parameter: {e}")))?;
    tx.put_setting(&key, &text)?;
    Ok(())
}

pub fn get_parameter(
    tx: &mut dyn Txn,
    account: &str,
    region: &str,
    name: &str,
) -> CoreResult<Option<SsmParameter>> {
    let Some(text) = tx.get_setting(&ssm_key(account, region, name))? else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| CoreError::Internal(format!("reading the SSM parameter {name}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let a = derived_id("ami-", &["b", "us-east-1", "111111111111"]);
        assert_eq!(a, derived_id("ami-", &["b", "us-east-1", "111111111111"]));
        assert_ne!(a, derived_id("ami-", &["b", "us-west-2", "111111111111"]));
        assert_eq!(a.len(), "ami-0".len() + 16);
        let snap = snapshot_id(&a);
        assert!(snap.starts_with("snap-0") && snap.len() == 22, "{snap}");
        assert_eq!(snap, snapshot_id(&a));
        assert_ne!(snap, snapshot_id("ami-0000000000000000"));
    }
}
