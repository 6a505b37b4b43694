//! Sharing resources between accounts of one Region: where resource policies are kept and the
//! questions the rest of Kiln asks about them.
//!
//! A policy is a [`ResourcePolicy`] row in the owner's account and Region; each account it
//! grants has a [`ShareGrant`] row in its own account and Region. [`put_policy`] replaces both
//! sets together (in the call's transaction), [`remove_policy`] drops them when the resource is
//! deleted. Then:
//! - [`is_shared_with`] is one read of the grant row (Get by ARN, use as component or parent);
//! - [`shared_with`] lists the grantee's own grant rows and reads each resource (`--owner
//!   Shared` lists), never scanning other accounts;
//! - [`resolve_visible`] resolves a reference (version, `x` filter or build) to the newest
//!   matching row the caller owns or that is shared with it.
//!
//! Sharing never lets a grantee change a resource: every write path still looks resources up
//! in the caller's own scope only, so to a grantee a shared resource is as absent for
//! Delete*, Put*Policy and tagging as it is for any other account.

use crate::caller::Caller;
use crate::error::{CoreError, CoreResult};
use crate::lookup;
use kiln_domain::arn::{Arn, ResourceKind};
use kiln_domain::resources::sharing::{ResourcePolicy, ShareGrant, SharingPolicy};
use kiln_domain::version::VersionFilter;
use kiln_store::{ListQuery, Row, Txn, TxnExt};

/// The policy put on `resource`, if any.
pub fn get_policy(tx: &mut dyn Txn, resource: &Arn) -> CoreResult<Option<ResourcePolicy>> {
    Ok(tx.get::<ResourcePolicy>(&ResourcePolicy::key(resource).to_string())?)
}

/// Replaces the policy of `resource` (which the caller owns: the handler checked) and the
/// grants it makes.
pub fn put_policy(
    tx: &mut dyn Txn,
    caller: Caller<'_>,
    resource: &Arn,
    document: &str,
    policy: &SharingPolicy,
) -> CoreResult<()> {
    remove_policy(tx, resource)?;
    let record = ResourcePolicy {
        arn: ResourcePolicy::key(resource),
        resource_arn: resource.to_string(),
        document: document.to_string(),
        grantees: policy.grantees.iter().cloned().collect(),
        updated_at: caller.now_millis,
    };
    tx.put(&record)?;
    for grantee in &policy.grantees {
        tx.put(&ShareGrant {
            arn: ShareGrant::key(grantee, resource),
            resource_arn: resource.to_string(),
            kind: resource.kind,
            owner: resource.account.clone(),
        })?;
    }
    Ok(())
}

/// Removes the policy of `resource` and its grants (when the resource is deleted, or before a
/// new policy replaces it). Resources without a policy are left as they are.
pub fn remove_policy(tx: &mut dyn Txn, resource: &Arn) -> CoreResult<()> {
    let key = ResourcePolicy::key(resource);
    if let Some(old) = tx.get::<ResourcePolicy>(&key.to_string())? {
        for grantee in &old.grantees {
            tx.delete_row(&ShareGrant::key(grantee, resource).to_string())?;
        }
        tx.delete_row(&key.to_string())?;
    }
    Ok(())
}

/// [`remove_policy`] by ARN text (the delete handlers hold the ARN as they stored it).
pub fn remove_policy_of(tx: &mut dyn Txn, resource: &str) -> CoreResult<()> {
    match Arn::parse(resource) {
        Ok(arn) => remove_policy(tx, &arn),
        Err(_) => Ok(()),
    }
}

/// Whether `resource` (another account's, in the caller's Region) is shared with the caller.
pub fn is_shared_with(tx: &mut dyn Txn, caller: Caller<'_>, resource: &Arn) -> CoreResult<bool> {
    if resource.region != caller.region || resource.account == caller.account_id {
        return Ok(false);
    }
    Ok(tx
        .get_row(&ShareGrant::key(caller.account_id, resource).to_string())?
        .is_some())
}

/// The grants of kind `kind` the caller holds, in key order.
fn grants(tx: &mut dyn Txn, caller: Caller<'_>, kind: ResourceKind) -> CoreResult<Vec<ShareGrant>> {
    let rows: Vec<ShareGrant> = tx
        .list_rows(&ListQuery {
            account: caller.account_id.to_string(),
            region: caller.region.to_string(),
            kind: ResourceKind::ResourcePolicy,
            name: None,
            after: None,
        })?
        .into_iter()
        .filter(|row| row.name.starts_with(ShareGrant::PREFIX))
        .map(|row| lookup::decode_row::<ShareGrant>(&row))
        .collect::<CoreResult<_>>()?;
    Ok(rows.into_iter().filter(|g| g.kind == kind).collect())
}

/// The rows of kind `kind` other accounts share with the caller (those that still exist).
pub fn shared_with(
    tx: &mut dyn Txn,
    caller: Caller<'_>,
    kind: ResourceKind,
) -> CoreResult<Vec<Row>> {
    let mut rows = Vec::new();
    for grant in grants(tx, caller, kind)? {
        if let Some(row) = tx.get_row(&grant.resource_arn)? {
            rows.push(row);
        }
    }
    Ok(rows)
}

/// Like [`lookup::resolve`], but a reference to another account's resource in the caller's
/// Region resolves among the rows shared with the caller (the newest shared build that matches).
pub fn resolve_visible(
    tx: &mut dyn Txn,
    caller: Caller<'_>,
    arn: &str,
    field: &str,
) -> CoreResult<Option<Row>> {
    if let Some(row) = lookup::resolve(tx, caller, arn, field)? {
        return Ok(Some(row));
    }
    let Ok(parsed) = Arn::parse(arn) else {
        return Ok(None);
    };
    if parsed.region != caller.region || parsed.account == caller.account_id {
        return Ok(None);
    }
    if !parsed.kind.is_versioned() || parsed.build.is_some() {
        if !is_shared_with(tx, caller, &parsed)? {
            return Ok(None);
        }
        return Ok(tx.get_row(arn)?);
    }
    let filter = match &parsed.version {
        Some(v) => VersionFilter::parse(v).map_err(|e| lookup::version_error(field, e))?,
        None => VersionFilter::ANY,
    };
    let candidates = shared_with(tx, caller, parsed.kind)?
        .into_iter()
        .filter(|row| row.account == parsed.account && row.name == parsed.name)
        .collect();
    Ok(lookup::newest_row(candidates, &filter))
}

/// The recipe a build is ordered from (CreateImage, a pipeline's run or schedule): the
/// caller's own, or one another account shares with it. Recipe policies are put on one recipe
/// version; a version names it, and an `x` filter resolves among the versions shared with the
/// caller, as component references do. A reference to nothing is [`CoreError::Invalid`]
/// naming the field and the recipe (a grant taken away reads as "not shared").
pub fn resolve_recipe(
    tx: &mut dyn Txn,
    caller: Caller<'_>,
    arn: &str,
    field: &str,
) -> CoreResult<Row> {
    if let Some(row) = resolve_visible(tx, caller, arn, field)? {
        return Ok(row);
    }
    let parsed = Arn::parse(arn).ok();
    let kind = parsed.as_ref().map_or("resource", |a| a.kind.label());
    let foreign = parsed
        .as_ref()
        .is_some_and(|a| a.account != caller.account_id);
    Err(CoreError::Invalid(if foreign {
        format!("{field}: the {kind} '{arn}' does not exist or is not shared with this account")
    } else {
        format!("{field}: the {kind} '{arn}' does not exist")
    }))
}

/// The scope a build resolves the references of a recipe owned by `owner` in: the owner's.
/// Sharing a recipe shares what it names, as GetImageRecipe shows them to the grantee: its
/// components are the owner's (or shared with the owner), its parent image the owner's (or
/// shared with the owner, or Amazon-managed). Never more: what the owner could not use itself
/// does not resolve. The image built stays the caller's.
pub fn recipe_scope<'a>(caller: Caller<'a>, owner: &'a str) -> Caller<'a> {
    Caller {
        account_id: owner,
        ..caller
    }
}

/// Whether the caller may read `arn` exactly: its own in this Region, or shared with it.
pub fn visible(tx: &mut dyn Txn, caller: Caller<'_>, arn: &Arn) -> CoreResult<bool> {
    if arn.region != caller.region {
        return Ok(false);
    }
    if arn.account == caller.account_id {
        return Ok(true);
    }
    is_shared_with(tx, caller, arn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_store::Store;
    use std::collections::BTreeSet;

    const OWNER: &str = "111111111111";
    const GRANTEE: &str = "222222222222";
    const OTHER: &str = "333333333333";

    fn caller(account: &str) -> Caller<'_> {
        Caller {
            account_id: account,
            region: "us-east-1",
            now_millis: 1,
        }
    }

    fn component_row(version: &str, build: u32) -> Row {
        let arn = format!("arn:aws:imagebuilder:us-east-1:{OWNER}:component/c/{version}/{build}");
        Row {
            arn,
            kind: ResourceKind::Component,
            account: OWNER.into(),
            region: "us-east-1".into(),
            name: "c".into(),
            version: Some(version.into()),
            build: Some(build),
            body: "{}".into(),
        }
    }

    #[test]
    fn grants_follow_the_policy_and_resolve_among_shared_builds() {
        let dir = tempfile::tempdir().unwrap();
        let database = kiln_store::Database::Sqlite(dir.path().join("kiln.db"));
        let store = Store::open(&database, kiln_store::sqlite::Sync::Normal).unwrap();
        let one = component_row("1.0.0", 1);
        let two = component_row("1.1.0", 1);
        let arn_one = Arn::parse(&one.arn).unwrap();
        let grant = SharingPolicy {
            grantees: BTreeSet::from([GRANTEE.to_string()]),
        };
        store
            .write(|tx| -> CoreResult<()> {
                tx.put_row(&one)?;
                tx.put_row(&two)?;
                put_policy(tx, caller(OWNER), &arn_one, "{}", &grant)?;
                Ok(())
            })
            .unwrap()
            .unwrap();
        store
            .write(|tx| -> CoreResult<()> {
                let g = caller(GRANTEE);
                assert!(is_shared_with(tx, g, &arn_one)?);
                assert!(!is_shared_with(tx, caller(OTHER), &arn_one)?);
                assert_eq!(shared_with(tx, g, ResourceKind::Component)?.len(), 1);
                assert!(shared_with(tx, g, ResourceKind::Image)?.is_empty());
                // 1.1.0 is newer but not shared: the filter picks the shared 1.0.0.
                let filter = format!("arn:aws:imagebuilder:us-east-1:{OWNER}:component/c/1.x.x");
                let got = resolve_visible(tx, g, &filter, "f")?.map(|r| r.arn);
                assert_eq!(got, Some(one.arn.clone()));
                assert!(resolve_visible(tx, caller(OTHER), &filter, "f")?.is_none());
                // Replacing the policy without the grantee takes the grant away.
                let none = SharingPolicy {
                    grantees: BTreeSet::from([OTHER.to_string()]),
                };
                put_policy(tx, caller(OWNER), &arn_one, "{}", &none)?;
                assert!(!is_shared_with(tx, g, &arn_one)?);
                assert!(is_shared_with(tx, caller(OTHER), &arn_one)?);
                remove_policy(tx, &arn_one)?;
                assert!(!is_shared_with(tx, caller(OTHER), &arn_one)?);
                assert!(get_policy(tx, &arn_one)?.is_none());
                Ok(())
            })
            .unwrap()
            .unwrap();
    }
    #[test]
    fn a_shared_recipe_resolves_for_the_grantee_and_its_references_in_the_owners_scope() {
        let dir = tempfile::tempdir().unwrap();
        let database = kiln_store::Database::Sqlite(dir.path().join("kiln.db"));
        let store = Store::open(&database, kiln_store::sqlite::Sync::Normal).unwrap();
        let arn = format!("arn:aws:imagebuilder:us-east-1:{OWNER}:image-recipe/r/1.0.0");
        let recipe = Row {
            arn: arn.clone(),
            kind: ResourceKind::ImageRecipe,
            account: OWNER.into(),
            region: "us-east-1".into(),
            name: "r".into(),
            version: Some("1.0.0".into()),
            build: None,
            body: "{}".into(),
        };
        let grant = SharingPolicy {
            grantees: BTreeSet::from([GRANTEE.to_string()]),
        };
        store
            .write(|tx| -> CoreResult<()> {
                tx.put_row(&recipe)?;
                put_policy(tx, caller(OWNER), &Arn::parse(&arn).unwrap(), "{}", &grant)?;
                Ok(())
            })
            .unwrap()
            .unwrap();
        store
            .write(|tx| -> CoreResult<()> {
                let g = caller(GRANTEE);
                assert_eq!(resolve_recipe(tx, g, &arn, "imageRecipeArn")?.arn, arn);
                // A filter resolves among the shared versions, as for components.
                let filter = arn.replace("1.0.0", "1.x.x");
                assert_eq!(resolve_recipe(tx, g, &filter, "imageRecipeArn")?.arn, arn);
                let refused = resolve_recipe(tx, caller(OTHER), &arn, "imageRecipeArn")
                    .unwrap_err()
                    .to_string();
                assert!(
                    refused.starts_with("imageRecipeArn: the image recipe"),
                    "{refused}"
                );
                assert!(
                    refused.contains("is not shared with this account"),
                    "{refused}"
                );
                let own = format!("arn:aws:imagebuilder:us-east-1:{GRANTEE}:image-recipe/r/1.0.0");
                let missing = resolve_recipe(tx, g, &own, "imageRecipeArn")
                    .unwrap_err()
                    .to_string();
                assert!(missing.ends_with("does not exist"), "{missing}");
                // The recipe's references resolve as its owner's, at the caller's time.
                let scope = recipe_scope(g, OWNER);
                assert_eq!((scope.account_id, scope.region), (OWNER, "us-east-1"));
                assert_eq!(scope.now_millis, g.now_millis);
                Ok(())
            })
            .unwrap()
            .unwrap();
    }
}
