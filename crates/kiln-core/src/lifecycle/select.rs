//! The images a lifecycle policy governs, as evaluation facts.
//!
//! A policy sees the images of its own account and Region whose type matches its resource type
//! (AMI_IMAGE: AMI images; CONTAINER_IMAGE: container images) and that are not DELETED. By
//! recipe: the image's name (the recipe's) and its version against each `{name,
//! semanticVersion}`, where an `x` node matches any number. By tags: any pair of the policy's
//! tagMap on the Image Builder image (OR).

use crate::amis;
use crate::error::CoreResult;
use kiln_domain::arn::ResourceKind;
use kiln_domain::name::normalize;
use kiln_domain::resources::image::{Image, ImageStatus, ImageType};
use kiln_domain::resources::lifecycle::evaluate::{AmiFacts, Candidate};
use kiln_domain::resources::lifecycle::{
    LifecyclePolicy, PolicyResourceType, RecipeSelection, ResourceSelection,
};
use kiln_store::{ListQuery, Txn, TxnExt};

/// Whether the version `version` (`1.2.3`) matches the pattern (`1.x.x`).
pub fn version_matches(pattern: &str, version: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let v: Vec<&str> = version.split('.').collect();
    p.len() == 3
        && v.len() == 3
        && p.iter().zip(&v).all(|(p, v)| {
            *p == "x"
                || p.parse::<u64>()
                    .ok()
                    .is_some_and(|n| v.parse::<u64>().ok() == Some(n))
        })
}

fn recipe_selected(recipes: &[RecipeSelection], image: &Image) -> bool {
    let version = image.arn.version.as_deref().unwrap_or_default();
    recipes.iter().any(|r| {
        normalize(&r.name) == normalize(&image.arn.name)
            && version_matches(&r.semantic_version, version)
    })
}

/// The facts of one AMI output of an image, from its EC2 record when it still exists.
fn ami_facts(
    tx: &mut dyn Txn,
    region: &str,
    account: &str,
    image_id: &str,
) -> CoreResult<AmiFacts> {
    let mut facts = AmiFacts {
        image_id: image_id.to_string(),
        region: region.to_string(),
        account_id: account.to_string(),
        ..Default::default()
    };
    if let Some(ami) = amis::find(tx, region, image_id)? {
        facts.public = ami.launch_permission.public;
        facts.shared_accounts = ami.launch_permission.user_ids.iter().cloned().collect();
        facts.tags = ami.tags.clone();
        // Builds record when they launch an instance from an AMI (`amis::record_launch`); an
        // AMI never launched has no time and is not excluded, as on EC2.
        facts.last_launched = ami.last_launched;
    }
    Ok(facts)
}

/// The candidate facts of `image` (its tags read from the store).
pub fn candidate(tx: &mut dyn Txn, image: &Image) -> CoreResult<Candidate> {
    let arn = image.arn.to_string();
    let tags = tx.tags(&arn)?;
    let mut amis_of = Vec::new();
    for out in &image.amis {
        amis_of.push(ami_facts(tx, &out.region, &out.account_id, &out.image_id)?);
    }
    Ok(Candidate {
        arn,
        recipe_version: format!(
            "{}/{}",
            image.arn.name,
            image.arn.version.as_deref().unwrap_or_default()
        ),
        status: image.status,
        date_created: image.date_created,
        tags,
        amis: amis_of,
    })
}

/// The images `policy` governs, as candidates.
pub fn candidates(tx: &mut dyn Txn, policy: &LifecyclePolicy) -> CoreResult<Vec<Candidate>> {
    let images = tx.list::<Image>(&ListQuery {
        account: policy.arn.account.clone(),
        region: policy.arn.region.clone(),
        kind: ResourceKind::Image,
        name: None,
        after: None,
    })?;
    let wanted = match policy.resource_type {
        PolicyResourceType::AmiImage => ImageType::Ami,
        PolicyResourceType::ContainerImage => ImageType::Docker,
    };
    let mut out = Vec::new();
    for image in images {
        if image.image_type != wanted || image.status == ImageStatus::Deleted {
            continue;
        }
        let selected = match &policy.selection {
            ResourceSelection::Recipes(recipes) => recipe_selected(recipes, &image),
            ResourceSelection::TagMap(pairs) => {
                let tags = tx.tags(&image.arn.to_string())?;
                pairs.iter().any(|(k, v)| tags.get(k) == Some(v))
            }
        };
        if selected {
            out.push(candidate(tx, &image)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_patterns_match_node_by_node() {
        assert!(version_matches("1.x.x", "1.0.0"));
        assert!(version_matches("1.x.x", "1.7.3"));
        assert!(!version_matches("1.x.x", "2.0.0"));
        assert!(version_matches("x.x.x", "9.9.9"));
        assert!(version_matches("1.2.3", "1.2.3"));
        assert!(!version_matches("1.2.3", "1.2.4"));
        assert!(version_matches("x.2.x", "5.2.0"));
        assert!(!version_matches("1.x", "1.0.0"));
    }
}
