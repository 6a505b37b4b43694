//! One test per rule of §4.3 and the §10 checklist cases. Images are written as
//! `(name, recipe version, status, age in days)`; the expectation is the action (or none) per
//! image.

use super::*;
use crate::resources::lifecycle::{
    ExclusionRules, Filter, IncludeResources, LastLaunched, PolicyRule,
};
use ImageStatus::*;

const NOW: Millis = 1_000 * DAY_MILLIS;

fn age_rule(action: ActionType, days: u32, retain: Option<u32>) -> PolicyRule {
    PolicyRule {
        action,
        include: IncludeResources {
            amis: true,
            ..Default::default()
        },
        filter: Filter {
            kind: FilterType::Age,
            value: days,
            unit: Some(TimeUnit::Days),
            retain_at_least: retain,
        },
        exclusions: None,
    }
}

fn count_rule(n: u32) -> PolicyRule {
    PolicyRule {
        action: ActionType::Delete,
        include: IncludeResources::default(),
        filter: Filter {
            kind: FilterType::Count,
            value: n,
            unit: None,
            retain_at_least: None,
        },
        exclusions: None,
    }
}

fn image(name: &str, version: &str, status: ImageStatus, age_days: i64) -> Candidate {
    Candidate {
        arn: format!("arn:aws:imagebuilder:us-east-1:111122223333:image/{name}"),
        recipe_version: format!("web/{version}"),
        status,
        date_created: NOW - age_days * DAY_MILLIS - 1,
        tags: BTreeMap::new(),
        amis: vec![AmiFacts {
            image_id: format!("ami-{name}"),
            region: "us-east-1".into(),
            account_id: "111122223333".into(),
            ..Default::default()
        }],
    }
}

/// `(image suffix, action)` for every image, in evaluation order (newest first).
fn actions(rules: &[PolicyRule], images: &[Candidate], now: Millis) -> Vec<(String, String)> {
    evaluate(rules, images, now)
        .into_iter()
        .map(|d| {
            let name = d.arn.rsplit('/').next().unwrap_or_default().to_string();
            let what = match d.outcome {
                Outcome::Act { action, .. } => action_name(action).to_string(),
                Outcome::Excluded { action, .. } => format!("SKIP-{}", action_name(action)),
                Outcome::Untouched { .. } => "-".to_string(),
            };
            (name, what)
        })
        .collect()
}

fn expect(rules: &[PolicyRule], images: &[Candidate], want: &[(&str, &str)]) {
    let got = actions(rules, images, NOW);
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(got, want);
}

fn escalation() -> Vec<PolicyRule> {
    vec![
        age_rule(ActionType::Deprecate, 90, None),
        age_rule(ActionType::Disable, 120, None),
        age_rule(ActionType::Delete, 180, None),
    ]
}

#[test]
fn images_are_evaluated_newest_first() {
    let images = [
        image("a", "1.0.0", Available, 10),
        image("c", "1.0.0", Available, 30),
        image("b", "1.0.0", Available, 20),
    ];
    expect(
        &escalation(),
        &images,
        &[("a", "-"), ("b", "-"), ("c", "-")],
    );
}

#[test]
fn escalation_90_120_180_takes_one_action_per_run() {
    let rules = escalation();
    // A 200-day-old AVAILABLE image is only deprecated in this run.
    expect(
        &rules,
        &[image("a", "1.0.0", Available, 200)],
        &[("a", "DEPRECATE")],
    );
    // Next run: deprecated, it is disabled; then, disabled, it is deleted.
    expect(
        &rules,
        &[image("a", "1.0.0", Deprecated, 200)],
        &[("a", "DISABLE")],
    );
    expect(
        &rules,
        &[image("a", "1.0.0", Disabled, 200)],
        &[("a", "DELETE")],
    );
    // Each threshold on its own.
    let images = [
        image("a", "1.0.0", Available, 91),
        image("b", "1.0.0", Deprecated, 121),
        image("c", "1.0.0", Disabled, 181),
        image("d", "1.0.0", Deprecated, 100),
        image("e", "1.0.0", Disabled, 150),
    ];
    expect(
        &rules,
        &images,
        &[
            ("a", "DEPRECATE"),
            ("d", "-"),
            ("b", "DISABLE"),
            ("e", "-"),
            ("c", "DELETE"),
        ],
    );
}

#[test]
fn ages_are_strictly_greater_and_units_are_fixed_lengths() {
    let mut exactly = image("a", "1.0.0", Available, 90);
    exactly.date_created = NOW - 90 * DAY_MILLIS;
    expect(&escalation(), &[exactly], &[("a", "-")]);
    assert_eq!(duration(1, TimeUnit::Weeks), 7 * DAY_MILLIS);
    assert_eq!(duration(2, TimeUnit::Months), 60 * DAY_MILLIS);
    assert_eq!(duration(1, TimeUnit::Years), 365 * DAY_MILLIS);
}

#[test]
fn images_being_built_are_left_for_a_later_run() {
    let images = [
        image("a", "1.0.0", Building, 500),
        image("b", "1.0.0", Pending, 500),
        image("c", "1.0.0", Distributing, 500),
    ];
    expect(
        &escalation(),
        &images,
        &[("c", "-"), ("b", "-"), ("a", "-")],
    );
}

#[test]
fn deprecate_skips_deprecated_disabled_failed_and_cancelled_images() {
    let rules = [age_rule(ActionType::Deprecate, 1, None)];
    let images = [
        image("a", "1.0.0", Available, 5),
        image("b", "1.0.0", Deprecated, 6),
        image("c", "1.0.0", Disabled, 7),
        image("d", "1.0.0", Failed, 8),
        image("e", "1.0.0", Cancelled, 9),
    ];
    expect(
        &rules,
        &images,
        &[
            ("a", "DEPRECATE"),
            ("b", "-"),
            ("c", "-"),
            ("d", "-"),
            ("e", "-"),
        ],
    );
}

#[test]
fn disable_skips_disabled_failed_and_cancelled_images() {
    let rules = [age_rule(ActionType::Disable, 1, None)];
    let images = [
        image("a", "1.0.0", Available, 5),
        image("b", "1.0.0", Deprecated, 6),
        image("c", "1.0.0", Disabled, 7),
        image("d", "1.0.0", Failed, 8),
        image("e", "1.0.0", Cancelled, 9),
    ];
    expect(
        &rules,
        &images,
        &[
            ("a", "DISABLE"),
            ("b", "DISABLE"),
            ("c", "-"),
            ("d", "-"),
            ("e", "-"),
        ],
    );
}

#[test]
fn delete_considers_any_finished_state() {
    let rules = [age_rule(ActionType::Delete, 1, None)];
    let images = [
        image("a", "1.0.0", Available, 5),
        image("b", "1.0.0", Deprecated, 6),
        image("c", "1.0.0", Disabled, 7),
        image("d", "1.0.0", Failed, 8),
        image("e", "1.0.0", Cancelled, 9),
    ];
    expect(
        &rules,
        &images,
        &[
            ("a", "DELETE"),
            ("b", "DELETE"),
            ("c", "DELETE"),
            ("d", "DELETE"),
            ("e", "DELETE"),
        ],
    );
}

#[test]
fn count_keeps_the_newest_per_recipe_version() {
    // COUNT 3 over 5 images of 1.0.0 and 5 of 1.1.0 deletes 2 + 2.
    let mut images = Vec::new();
    for i in 0..5 {
        images.push(image(&format!("a{i}"), "1.0.0", Available, 10 + i));
        images.push(image(&format!("b{i}"), "1.1.0", Available, 10 + i));
    }
    let decisions = actions(&[count_rule(3)], &images, NOW);
    let deleted: Vec<&str> = decisions
        .iter()
        .filter(|(_, a)| a == "DELETE")
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(deleted, ["b3", "a3", "b4", "a4"]);
}

#[test]
fn count_applies_per_recipe_version_under_tag_selection_too() {
    // The engine groups by recipe version whatever selected the images: two recipes.
    let mut images = vec![
        image("x0", "1.0.0", Available, 1),
        image("x1", "1.0.0", Available, 2),
    ];
    let mut other = image("y0", "1.0.0", Available, 3);
    other.recipe_version = "api/1.0.0".into();
    images.push(other);
    expect(
        &[count_rule(1)],
        &images,
        &[("x0", "-"), ("x1", "DELETE"), ("y0", "-")],
    );
}

#[test]
fn failed_and_cancelled_images_are_deleted_without_taking_a_slot() {
    let images = [
        image("f", "1.0.0", Failed, 1),
        image("a", "1.0.0", Available, 2),
        image("c", "1.0.0", Cancelled, 3),
        image("b", "1.0.0", Available, 4),
        image("d", "1.0.0", Available, 5),
    ];
    expect(
        &[count_rule(2)],
        &images,
        &[
            ("f", "DELETE"),
            ("a", "-"),
            ("c", "DELETE"),
            ("b", "-"),
            ("d", "DELETE"),
        ],
    );
}

#[test]
fn age_with_retain_at_least_keeps_the_newest_whatever_their_age() {
    let rules = [age_rule(ActionType::Delete, 30, Some(2))];
    let images = [
        image("a", "1.0.0", Available, 100),
        image("b", "1.0.0", Available, 200),
        image("c", "1.0.0", Available, 300),
        image("d", "1.0.0", Available, 5),
    ];
    expect(
        &rules,
        &images,
        &[("d", "-"), ("a", "-"), ("b", "DELETE"), ("c", "DELETE")],
    );
}

#[test]
fn image_tag_exclusion_skips_deprecate_and_disable() {
    let mut rules = escalation();
    let mut keep = BTreeMap::new();
    keep.insert("Retain".to_string(), "True".to_string());
    rules[0].exclusions = Some(ExclusionRules {
        tag_map: keep.clone(),
        amis: None,
    });
    let mut tagged = image("a", "1.0.0", Available, 100);
    tagged.tags = keep.clone();
    // Excluded from DEPRECATE (reported), DISABLE and DELETE do not apply yet.
    expect(&rules, &[tagged.clone()], &[("a", "SKIP-DEPRECATE")]);
    // Old enough for DISABLE, which has no exclusion: it is disabled (one action).
    tagged.date_created = NOW - 130 * DAY_MILLIS;
    expect(&rules, &[tagged.clone()], &[("a", "DISABLE")]);
    let mut other = tagged.clone();
    other.tags.insert("Retain".into(), "False".into());
    expect(&rules[..1], &[other], &[("a", "DEPRECATE")]);
}

#[test]
fn tag_excluded_image_beyond_retention_is_kept_and_takes_no_slot() {
    let mut rule = count_rule(2);
    let mut keep = BTreeMap::new();
    keep.insert("Retain".to_string(), "True".to_string());
    rule.exclusions = Some(ExclusionRules {
        tag_map: keep.clone(),
        amis: None,
    });
    let mut images = vec![
        image("a", "1.0.0", Available, 1),
        image("b", "1.0.0", Available, 2),
        image("c", "1.0.0", Available, 3),
        image("d", "1.0.0", Available, 4),
        image("e", "1.0.0", Available, 5),
    ];
    images[1].tags = keep.clone(); // b: within the newest 2 but takes no slot
    images[3].tags = keep.clone(); // d: beyond retention, kept
    expect(
        &[rule],
        &images,
        &[
            ("a", "-"),
            ("b", "-"),
            ("c", "-"),
            ("d", "SKIP-DELETE"),
            ("e", "DELETE"),
        ],
    );
}

fn amis_of(decisions: &[Decision]) -> Vec<(String, Option<String>)> {
    decisions
        .iter()
        .flat_map(|d| match &d.outcome {
            Outcome::Act { amis, .. } => amis
                .iter()
                .map(|a| (a.image_id.clone(), a.skipped.clone()))
                .collect(),
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn ami_exclusions_apply_in_order_and_name_the_condition() {
    let mut rule = age_rule(ActionType::Delete, 1, None);
    let mut ex_tags = BTreeMap::new();
    ex_tags.insert("SharedWith".to_string(), "Partner".to_string());
    rule.exclusions = Some(ExclusionRules {
        tag_map: BTreeMap::new(),
        amis: Some(AmiExclusions {
            is_public: true,
            regions: vec!["eu-central-1".into()],
            shared_accounts: vec!["444455556666".into()],
            last_launched: Some(LastLaunched {
                value: 30,
                unit: TimeUnit::Days,
            }),
            tag_map: ex_tags.clone(),
        }),
    });
    let mut img = image("a", "1.0.0", Available, 10);
    let base = img.amis[0].clone();
    let ami = |id: &str, f: &dyn Fn(&mut AmiFacts)| {
        let mut a = base.clone();
        a.image_id = id.into();
        f(&mut a);
        a
    };
    img.amis = vec![
        // Region wins over isPublic.
        ami("ami-region", &|a| {
            a.region = "eu-central-1".into();
            a.public = true;
        }),
        ami("ami-public", &|a| {
            a.public = true;
            a.tags = ex_tags.clone();
        }),
        ami("ami-tags", &|a| {
            a.tags = ex_tags.clone();
            a.shared_accounts = vec!["444455556666".into()];
        }),
        ami("ami-shared", &|a| {
            a.shared_accounts = vec!["444455556666".into()];
            a.last_launched = Some(NOW - 2 * DAY_MILLIS);
        }),
        ami("ami-launched", &|a| {
            a.last_launched = Some(NOW - 2 * DAY_MILLIS)
        }),
        // Launched an hour ago: EC2 does not show it yet (24 h delay).
        ami("ami-recent", &|a| {
            a.last_launched = Some(NOW - DAY_MILLIS / 24)
        }),
        // Launched long ago, and never: not excluded.
        ami("ami-old", &|a| {
            a.last_launched = Some(NOW - 40 * DAY_MILLIS)
        }),
        ami("ami-never", &|_| {}),
    ];
    let got = amis_of(&evaluate(&[rule], &[img], NOW));
    let reasons: Vec<(&str, Option<&str>)> = got
        .iter()
        .map(|(id, r)| (id.as_str(), r.as_deref()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("ami-region", Some("Region excluded: eu-central-1")),
            ("ami-public", Some("Public AMI excluded (isPublic)")),
            ("ami-tags", Some("AMI tag excluded: SharedWith=Partner")),
            (
                "ami-shared",
                Some("AMI shared with excluded account 444455556666")
            ),
            (
                "ami-launched",
                Some("AMI launched within the last 30 DAYS (lastLaunched)")
            ),
            ("ami-recent", None),
            ("ami-old", None),
            ("ami-never", None),
        ]
    );
}

#[test]
fn amis_are_listed_only_when_the_rule_includes_them() {
    let mut rule = age_rule(ActionType::Deprecate, 1, None);
    let img = image("a", "1.0.0", Available, 10);
    assert_eq!(
        amis_of(&evaluate(
            std::slice::from_ref(&rule),
            std::slice::from_ref(&img),
            NOW
        ))
        .len(),
        1
    );
    rule.include.amis = false;
    assert!(amis_of(&evaluate(&[rule], &[img], NOW)).is_empty());
}

#[test]
fn deprecated_this_run_takes_no_delete_slot() {
    // §4.6: an image acted on by DEPRECATE never reaches the DELETE rule in that run.
    let rules = [
        age_rule(ActionType::Deprecate, 50, None),
        age_rule(ActionType::Delete, 100, Some(1)),
    ];
    let images = [
        image("a", "1.0.0", Available, 60),
        image("b", "1.0.0", Deprecated, 200),
        image("c", "1.0.0", Deprecated, 300),
    ];
    expect(
        &rules,
        &images,
        &[("a", "DEPRECATE"), ("b", "-"), ("c", "DELETE")],
    );
}
