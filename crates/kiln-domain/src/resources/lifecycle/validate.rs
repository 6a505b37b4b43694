//! The cross-field rules of a lifecycle policy (contract §4.1), as pure functions.
//!
//! The wire layer already checks what the model states member by member (required members,
//! ranges, lengths, the `semanticVersion` pattern); what is left are the rules between members:
//! which filters go with which actions, which underlying resources an action may include for
//! the policy's resource type, and the choice between recipes and tags. Every refusal names the
//! member path as the request spells it (`policyDetails[1].filter.retainAtLeast`), indexes
//! counting from 0.
//!
//! A rule that forbids a member because of another one is a [`PolicyError::Combination`]
//! (`InvalidParameterCombinationException`); a value refused on its own is a
//! [`PolicyError::Value`] (`InvalidParameterValueException`).

use super::{
    ActionType, FilterType, PolicyResourceType, PolicyRule, RecipeSelection, ResourceSelection,
};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Members that cannot go together.
    #[error("{path}: {message}")]
    Combination { path: String, message: String },
    /// A value refused on its own.
    #[error("{path}: {message}")]
    Value { path: String, message: String },
}

impl PolicyError {
    pub fn path(&self) -> &str {
        match self {
            PolicyError::Combination { path, .. } | PolicyError::Value { path, .. } => path,
        }
    }
}

fn combination(path: String, message: &str) -> PolicyError {
    PolicyError::Combination {
        path,
        message: message.to_string(),
    }
}

fn action_name(action: ActionType) -> &'static str {
    match action {
        ActionType::Deprecate => "DEPRECATE",
        ActionType::Disable => "DISABLE",
        ActionType::Delete => "DELETE",
    }
}

/// Checks a policy's rules (`policyDetails`) against each other and its resource type.
pub fn check_rules(
    resource_type: PolicyResourceType,
    rules: &[PolicyRule],
) -> Result<(), PolicyError> {
    let mut seen: Vec<ActionType> = Vec::with_capacity(rules.len());
    for (i, rule) in rules.iter().enumerate() {
        if seen.contains(&rule.action) {
            return Err(combination(
                format!("policyDetails[{i}].action.type"),
                &format!(
                    "a policy has at most one rule per action type, and {} is already used by an earlier rule",
                    action_name(rule.action)
                ),
            ));
        }
        seen.push(rule.action);
        check_rule(resource_type, i, rule)?;
    }
    Ok(())
}

fn check_rule(
    resource_type: PolicyResourceType,
    i: usize,
    rule: &PolicyRule,
) -> Result<(), PolicyError> {
    let at = |member: &str| format!("policyDetails[{i}].{member}");
    let action = action_name(rule.action);
    let include = rule.include;
    let filter = &rule.filter;

    // The resource type decides which actions and underlying resources make sense.
    match resource_type {
        PolicyResourceType::ContainerImage => {
            if rule.action != ActionType::Delete {
                return Err(combination(
                    at("action.type"),
                    &format!(
                        "{action} does not apply to CONTAINER_IMAGE policies, which only DELETE"
                    ),
                ));
            }
            if include.amis {
                return Err(combination(
                    at("action.includeResources.amis"),
                    "CONTAINER_IMAGE policies cannot include AMIs",
                ));
            }
            if include.snapshots {
                return Err(combination(
                    at("action.includeResources.snapshots"),
                    "CONTAINER_IMAGE policies cannot include snapshots",
                ));
            }
            if rule.exclusions.as_ref().is_some_and(|e| e.amis.is_some()) {
                return Err(combination(
                    at("exclusionRules.amis"),
                    "CONTAINER_IMAGE policies cannot exclude AMIs",
                ));
            }
        }
        PolicyResourceType::AmiImage => {
            if include.containers {
                return Err(combination(
                    at("action.includeResources.containers"),
                    "AMI_IMAGE policies cannot include containers",
                ));
            }
        }
    }

    // What each action may include.
    if rule.action != ActionType::Delete {
        if include.containers {
            return Err(combination(
                at("action.includeResources.containers"),
                &format!("{action} can include AMIs only, not containers"),
            ));
        }
        if include.snapshots {
            return Err(combination(
                at("action.includeResources.snapshots"),
                &format!("{action} can include AMIs only, not snapshots"),
            ));
        }
    }
    if include.snapshots && !include.amis {
        return Err(combination(
            at("action.includeResources.snapshots"),
            "snapshots can only be included together with amis",
        ));
    }

    // Which filter goes with which action.
    match filter.kind {
        FilterType::Count => {
            if rule.action != ActionType::Delete {
                return Err(combination(
                    at("filter.type"),
                    &format!("COUNT is only allowed with DELETE, not with {action}"),
                ));
            }
            if filter.unit.is_some() {
                return Err(combination(
                    at("filter.unit"),
                    "unit applies to AGE filters only; a COUNT filter counts images",
                ));
            }
            if filter.retain_at_least.is_some() {
                return Err(combination(
                    at("filter.retainAtLeast"),
                    "retainAtLeast applies to AGE filters of DELETE rules only, not to COUNT",
                ));
            }
        }
        FilterType::Age => {
            if filter.unit.is_none() {
                return Err(combination(
                    at("filter.unit"),
                    "unit is required with an AGE filter",
                ));
            }
            if filter.retain_at_least.is_some() && rule.action != ActionType::Delete {
                return Err(combination(
                    at("filter.retainAtLeast"),
                    &format!("retainAtLeast applies to AGE filters of DELETE rules only, not to {action}"),
                ));
            }
        }
    }
    Ok(())
}

/// `resourceSelection`: exactly one of `recipes` and `tagMap`; a recipe selected twice (same
/// name and version pattern) is refused.
pub fn selection(
    recipes: Option<Vec<RecipeSelection>>,
    tag_map: Option<BTreeMap<String, String>>,
) -> Result<ResourceSelection, PolicyError> {
    match (recipes, tag_map) {
        (Some(_), Some(_)) => Err(combination(
            "resourceSelection".to_string(),
            "give either recipes or tagMap, not both",
        )),
        (None, None) => Err(combination(
            "resourceSelection".to_string(),
            "give one of recipes and tagMap",
        )),
        (None, Some(tags)) => Ok(ResourceSelection::TagMap(tags)),
        (Some(recipes), None) => {
            for (i, recipe) in recipes.iter().enumerate() {
                if recipes[..i].contains(recipe) {
                    return Err(PolicyError::Value {
                        path: format!("resourceSelection.recipes[{i}]"),
                        message: format!(
                            "the recipe '{}' with semanticVersion '{}' is already selected",
                            recipe.name, recipe.semantic_version
                        ),
                    });
                }
            }
            Ok(ResourceSelection::Recipes(recipes))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{AmiExclusions, ExclusionRules, Filter, IncludeResources, TimeUnit};
    use super::*;

    const AMI: PolicyResourceType = PolicyResourceType::AmiImage;
    const CONTAINER: PolicyResourceType = PolicyResourceType::ContainerImage;

    fn rule(action: ActionType, kind: FilterType) -> PolicyRule {
        PolicyRule {
            action,
            include: IncludeResources::default(),
            filter: Filter {
                kind,
                value: 3,
                unit: (kind == FilterType::Age).then_some(TimeUnit::Days),
                retain_at_least: None,
            },
            exclusions: None,
        }
    }

    fn with(mut r: PolicyRule, f: impl FnOnce(&mut PolicyRule)) -> PolicyRule {
        f(&mut r);
        r
    }

    fn include(amis: bool, snapshots: bool, containers: bool) -> IncludeResources {
        IncludeResources {
            amis,
            snapshots,
            containers,
        }
    }

    #[test]
    fn valid_policies_pass() {
        use ActionType::*;
        use FilterType::*;
        let cases: Vec<(PolicyResourceType, Vec<PolicyRule>)> = vec![
            (
                AMI,
                vec![
                    with(rule(Deprecate, Age), |r| {
                        r.include = include(true, false, false)
                    }),
                    with(rule(Disable, Age), |r| {
                        r.include = include(true, false, false)
                    }),
                    with(rule(Delete, Age), |r| {
                        r.include = include(true, true, false);
                        r.filter.retain_at_least = Some(3);
                        r.exclusions = Some(ExclusionRules {
                            amis: Some(AmiExclusions::default()),
                            ..Default::default()
                        });
                    }),
                ],
            ),
            (AMI, vec![rule(Delete, Count)]),
            (
                CONTAINER,
                vec![with(rule(Delete, Count), |r| {
                    r.include = include(false, false, true)
                })],
            ),
            (CONTAINER, vec![rule(Delete, Age)]),
        ];
        for (kind, rules) in cases {
            assert_eq!(check_rules(kind, &rules), Ok(()), "{rules:?}");
        }
    }

    #[test]
    fn each_rule_refuses_naming_the_member() {
        use ActionType::*;
        use FilterType::*;
        let cases: Vec<(&str, PolicyResourceType, Vec<PolicyRule>, &str)> = vec![
            (
                "one rule per action",
                AMI,
                vec![rule(Delete, Age), rule(Delete, Count)],
                "policyDetails[1].action.type",
            ),
            (
                "COUNT only with DELETE",
                AMI,
                vec![rule(Deprecate, Count)],
                "policyDetails[0].filter.type",
            ),
            (
                "AGE needs unit",
                AMI,
                vec![with(rule(Delete, Age), |r| r.filter.unit = None)],
                "policyDetails[0].filter.unit",
            ),
            (
                "unit only with AGE",
                AMI,
                vec![with(rule(Delete, Count), |r| {
                    r.filter.unit = Some(TimeUnit::Days)
                })],
                "policyDetails[0].filter.unit",
            ),
            (
                "retainAtLeast not with COUNT",
                AMI,
                vec![with(rule(Delete, Count), |r| {
                    r.filter.retain_at_least = Some(2)
                })],
                "policyDetails[0].filter.retainAtLeast",
            ),
            (
                "retainAtLeast not with DEPRECATE",
                AMI,
                vec![
                    rule(Delete, Count),
                    with(rule(Deprecate, Age), |r| r.filter.retain_at_least = Some(2)),
                ],
                "policyDetails[1].filter.retainAtLeast",
            ),
            (
                "snapshots only with amis",
                AMI,
                vec![with(rule(Delete, Age), |r| {
                    r.include = include(false, true, false)
                })],
                "policyDetails[0].action.includeResources.snapshots",
            ),
            (
                "DISABLE includes AMIs only: snapshots",
                AMI,
                vec![with(rule(Disable, Age), |r| {
                    r.include = include(true, true, false)
                })],
                "policyDetails[0].action.includeResources.snapshots",
            ),
            (
                "DEPRECATE includes AMIs only: containers",
                CONTAINER,
                vec![rule(Deprecate, Age)],
                "policyDetails[0].action.type",
            ),
            (
                "AMI_IMAGE cannot include containers",
                AMI,
                vec![with(rule(Delete, Age), |r| {
                    r.include = include(false, false, true)
                })],
                "policyDetails[0].action.includeResources.containers",
            ),
            (
                "CONTAINER_IMAGE deletes only",
                CONTAINER,
                vec![rule(Disable, Age)],
                "policyDetails[0].action.type",
            ),
            (
                "CONTAINER_IMAGE includes no AMIs",
                CONTAINER,
                vec![with(rule(Delete, Age), |r| {
                    r.include = include(true, false, false)
                })],
                "policyDetails[0].action.includeResources.amis",
            ),
            (
                "CONTAINER_IMAGE includes no snapshots",
                CONTAINER,
                vec![with(rule(Delete, Age), |r| {
                    r.include = include(false, true, true)
                })],
                "policyDetails[0].action.includeResources.snapshots",
            ),
            (
                "CONTAINER_IMAGE excludes no AMIs",
                CONTAINER,
                vec![with(rule(Delete, Age), |r| {
                    r.exclusions = Some(ExclusionRules {
                        amis: Some(AmiExclusions::default()),
                        ..Default::default()
                    })
                })],
                "policyDetails[0].exclusionRules.amis",
            ),
        ];
        for (name, kind, rules, path) in cases {
            match check_rules(kind, &rules) {
                Err(e @ PolicyError::Combination { .. }) => {
                    assert_eq!(e.path(), path, "{name}: {e}");
                    assert!(
                        e.to_string().starts_with(&format!("{path}: ")),
                        "{name}: {e}"
                    );
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_selection_is_recipes_or_tags() {
        let recipe = |name: &str, v: &str| RecipeSelection {
            name: name.into(),
            semantic_version: v.into(),
        };
        let tags: BTreeMap<String, String> = [("k".to_string(), "v".to_string())].into();
        assert_eq!(
            selection(None, Some(tags.clone())),
            Ok(ResourceSelection::TagMap(tags.clone()))
        );
        assert_eq!(
            selection(Some(vec![recipe("a", "1.x.x"), recipe("a", "2.x.x")]), None),
            Ok(ResourceSelection::Recipes(vec![
                recipe("a", "1.x.x"),
                recipe("a", "2.x.x")
            ]))
        );
        let cases = [
            (
                selection(Some(vec![recipe("a", "1.x.x")]), Some(tags)),
                "resourceSelection",
                true,
            ),
            (selection(None, None), "resourceSelection", true),
            (
                selection(Some(vec![recipe("a", "1.x.x"), recipe("a", "1.x.x")]), None),
                "resourceSelection.recipes[1]",
                false,
            ),
        ];
        for (result, path, is_combination) in cases {
            let e = result.expect_err(path);
            assert_eq!(e.path(), path);
            assert_eq!(matches!(e, PolicyError::Combination { .. }), is_combination);
        }
    }
}
