//! Resource policies (PutComponentPolicy, PutImagePolicy, PutImageRecipePolicy,
//! PutContainerRecipePolicy): the document parser, and the two records storage keeps.
//!
//! Image Builder shares a resource with other accounts through AWS RAM, which accepts only a
//! narrow policy: `Allow` statements whose principals are accounts and whose actions are the
//! read actions of the resource's type. [`parse_policy`] accepts exactly that and refuses
//! anything else with a message naming the part that is wrong, so a policy Kiln stores is one
//! it acts on in full (nothing in it is silently ignored).
//!
//! Storage keeps a [`ResourcePolicy`] per resource in the owner's account and Region, keyed
//! by [`ResourcePolicy::key`], and a [`ShareGrant`] per (grantee, resource) in the grantee's
//! account and Region ([`ShareGrant::key`]), so that "what is shared with account X" is one
//! list of X's rows, and "is this resource shared with X" is one read. Both are rows of
//! kind `resource-policy`; their names start with `policy+` and `grant+` so the two never mix.

use super::{Millis, Resource};
use crate::arn::{Arn, ResourceKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;
use thiserror::Error;

/// The policy versions IAM knows.
const VERSIONS: [&str; 2] = ["2012-10-17", "2008-10-17"];

/// Why a policy document is refused; the message names the part that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("policy: {0}")]
pub struct PolicyError(pub String);

fn bad(message: impl Into<String>) -> PolicyError {
    PolicyError(message.into())
}

/// The resource types that take a policy.
pub fn shareable(kind: ResourceKind) -> bool {
    matches!(
        kind,
        ResourceKind::Component
            | ResourceKind::Image
            | ResourceKind::ImageRecipe
            | ResourceKind::ContainerRecipe
    )
}

/// The actions a policy may grant on a resource of `kind`: the ones the Image Builder user
/// guide lists for sharing it (read and list; a grantee never changes a shared resource).
pub fn allowed_actions(kind: ResourceKind) -> &'static [&'static str] {
    match kind {
        ResourceKind::Component => &["imagebuilder:GetComponent", "imagebuilder:ListComponents"],
        ResourceKind::Image => &["imagebuilder:GetImage", "imagebuilder:ListImages"],
        ResourceKind::ImageRecipe => &[
            "imagebuilder:GetImageRecipe",
            "imagebuilder:ListImageRecipes",
        ],
        ResourceKind::ContainerRecipe => &[
            "imagebuilder:GetContainerRecipe",
            "imagebuilder:ListContainerRecipes",
        ],
        _ => &[],
    }
}

/// What a valid policy grants: the accounts the resource is shared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharingPolicy {
    pub grantees: BTreeSet<String>,
}

/// Parses and checks a policy document for the resource `resource` (its ARN, whose kind says
/// which actions are allowed), owned by `owner`.
pub fn parse_policy(text: &str, resource: &Arn) -> Result<SharingPolicy, PolicyError> {
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| bad(format!("the document is not valid JSON: {e}")))?;
    let Value::Object(doc) = doc else {
        return Err(bad("the document must be a JSON object"));
    };
    for key in doc.keys() {
        if !matches!(key.as_str(), "Version" | "Id" | "Statement") {
            return Err(bad(format!(
                "'{key}' is not supported; a policy has Version, Id and Statement"
            )));
        }
    }
    match doc.get("Version") {
        Some(Value::String(v)) if VERSIONS.contains(&v.as_str()) => {}
        Some(v) => {
            return Err(bad(format!(
                "Version {v} is not a policy version (use \"2012-10-17\")"
            )))
        }
        None => return Err(bad("Version is required (\"2012-10-17\")")),
    }
    if let Some(id) = doc.get("Id") {
        if !id.is_string() {
            return Err(bad("Id must be a string"));
        }
    }
    let statements = match doc.get("Statement") {
        Some(Value::Array(list)) if !list.is_empty() => list.iter().collect::<Vec<_>>(),
        Some(Value::Array(_)) => return Err(bad("Statement is empty")),
        Some(one @ Value::Object(_)) => vec![one],
        Some(_) => return Err(bad("Statement must be an object or a list of objects")),
        None => return Err(bad("Statement is required")),
    };
    let mut grantees = BTreeSet::new();
    for (i, statement) in statements.iter().enumerate() {
        let at = format!("Statement[{i}]");
        grantees.extend(parse_statement(statement, &at, resource)?);
    }
    Ok(SharingPolicy { grantees })
}

fn parse_statement(
    statement: &Value,
    at: &str,
    resource: &Arn,
) -> Result<BTreeSet<String>, PolicyError> {
    let Value::Object(statement) = statement else {
        return Err(bad(format!("{at} must be an object")));
    };
    for key in statement.keys() {
        if !matches!(
            key.as_str(),
            "Sid" | "Effect" | "Principal" | "Action" | "Resource"
        ) {
            return Err(bad(format!(
                "{at}.{key} is not supported; a sharing statement has Sid, Effect, Principal, Action and Resource"
            )));
        }
    }
    if let Some(sid) = statement.get("Sid") {
        if !sid.is_string() {
            return Err(bad(format!("{at}.Sid must be a string")));
        }
    }
    match statement.get("Effect") {
        Some(Value::String(e)) if e == "Allow" => {}
        Some(e) => {
            return Err(bad(format!(
                "{at}.Effect {e} is not supported; sharing policies only Allow"
            )))
        }
        None => return Err(bad(format!("{at}.Effect is required (\"Allow\")"))),
    }
    let principals = match statement.get("Principal") {
        Some(Value::Object(p)) => {
            if let Some(key) = p.keys().find(|k| k.as_str() != "AWS") {
                return Err(bad(format!(
                    "{at}.Principal.{key} is not supported; share with accounts (Principal.AWS)"
                )));
            }
            strings(p.get("AWS"), &format!("{at}.Principal.AWS"))?
        }
        Some(_) => {
            return Err(bad(format!(
                "{at}.Principal must be {{\"AWS\": <account id or list of account ids>}}"
            )))
        }
        None => return Err(bad(format!("{at}.Principal is required"))),
    };
    let mut grantees = BTreeSet::new();
    for p in principals {
        let account = principal_account(&p).ok_or_else(|| {
            bad(format!(
                "{at}.Principal.AWS '{p}' is not an account: use a 12-digit account id or arn:aws:iam::<account id>:root (resources are shared with whole accounts)"
            ))
        })?;
        if account == resource.account {
            return Err(bad(format!(
                "{at}.Principal.AWS '{p}' is the resource's owner; share with other accounts"
            )));
        }
        grantees.insert(account);
    }
    let allowed = allowed_actions(resource.kind);
    for action in strings(statement.get("Action"), &format!("{at}.Action"))? {
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(&action)) {
            return Err(bad(format!(
                "{at}.Action '{action}' is not allowed for a {}; allowed: {}",
                resource.kind.label(),
                allowed.join(", ")
            )));
        }
    }
    if statement.contains_key("Resource") {
        let want = resource.to_string();
        for r in strings(statement.get("Resource"), &format!("{at}.Resource"))? {
            if r != want {
                return Err(bad(format!(
                    "{at}.Resource '{r}' is not the ARN of the resource the policy is put on ({want})"
                )));
            }
        }
    }
    Ok(grantees)
}

/// A string or a non-empty list of strings.
fn strings(value: Option<&Value>, at: &str) -> Result<Vec<String>, PolicyError> {
    match value {
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(list)) if !list.is_empty() => list
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad(format!("{at} must hold strings")))
            })
            .collect(),
        Some(Value::Array(_)) => Err(bad(format!("{at} is empty"))),
        Some(_) => Err(bad(format!("{at} must be a string or a list of strings"))),
        None => Err(bad(format!("{at} is required"))),
    }
}

/// The account a principal names: a 12-digit id or `arn:<partition>:iam::<id>:root`.
fn principal_account(p: &str) -> Option<String> {
    let is_account = |s: &str| s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit());
    if is_account(p) {
        return Some(p.to_string());
    }
    let parts: Vec<&str> = p.split(':').collect();
    match parts.as_slice() {
        ["arn", partition, "iam", "", id, "root"]
            if partition.starts_with("aws") && is_account(id) =>
        {
            Some(id.to_string())
        }
        _ => None,
    }
}

/// The resource's ARN path as one name segment (`component/c/1.0.0/1` → `component+c+1.0.0+1`).
fn path_name(resource: &Arn) -> String {
    let arn = resource.to_string();
    let path = arn.splitn(6, ':').nth(5).unwrap_or_default();
    path.replace('/', "+")
}

/// The policy put on one resource, in its owner's account and Region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourcePolicy {
    pub arn: Arn,
    pub resource_arn: String,
    /// The document as the owner put it (GetComponentPolicy and the others answer it).
    pub document: String,
    pub grantees: Vec<String>,
    pub updated_at: Millis,
}

impl ResourcePolicy {
    pub fn key(resource: &Arn) -> Arn {
        Arn::new(
            &resource.region,
            &resource.account,
            ResourceKind::ResourcePolicy,
            &format!("policy+{}", path_name(resource)),
        )
    }
}

impl Resource for ResourcePolicy {
    fn arn(&self) -> &Arn {
        &self.arn
    }
}

/// One resource shared with one account, in the grantee's account and Region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareGrant {
    pub arn: Arn,
    pub resource_arn: String,
    pub kind: ResourceKind,
    pub owner: String,
}

impl ShareGrant {
    /// The name prefix of every grant row.
    pub const PREFIX: &'static str = "grant+";

    pub fn key(grantee: &str, resource: &Arn) -> Arn {
        Arn::new(
            &resource.region,
            grantee,
            ResourceKind::ResourcePolicy,
            &format!(
                "{}{}+{}",
                Self::PREFIX,
                resource.account,
                path_name(resource)
            ),
        )
    }
}

impl Resource for ShareGrant {
    fn arn(&self) -> &Arn {
        &self.arn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: &str = "111111111111";
    const OTHER: &str = "222222222222";

    fn component() -> Arn {
        Arn::parse(&format!(
            "arn:aws:imagebuilder:us-east-1:{OWNER}:component/c/1.0.0/1"
        ))
        .unwrap()
    }

    fn policy(statement: serde_json::Value) -> String {
        serde_json::json!({"Version": "2012-10-17", "Statement": statement}).to_string()
    }

    fn err(text: &str) -> String {
        parse_policy(text, &component()).unwrap_err().to_string()
    }

    #[test]
    fn accepts_accounts_and_root_arns_in_one_or_many_statements() {
        let one = policy(serde_json::json!({
            "Effect": "Allow", "Principal": {"AWS": OTHER},
            "Action": ["imagebuilder:GetComponent", "imagebuilder:ListComponents"],
            "Resource": component().to_string()
        }));
        let got = parse_policy(&one, &component()).unwrap();
        assert_eq!(got.grantees, BTreeSet::from([OTHER.to_string()]));
        let many = policy(serde_json::json!([
            {"Sid": "a", "Effect": "Allow", "Principal": {"AWS": [format!("arn:aws:iam::{OTHER}:root")]},
             "Action": "imagebuilder:getcomponent"},
            {"Effect": "Allow", "Principal": {"AWS": ["333333333333"]}, "Action": "imagebuilder:ListComponents"}
        ]));
        let got = parse_policy(&many, &component()).unwrap();
        assert_eq!(got.grantees.len(), 2);
    }

    #[test]
    fn refuses_what_ram_would_refuse_naming_the_part() {
        assert!(err("{nope").contains("not valid JSON"));
        assert!(err("[]").contains("JSON object"));
        assert!(err(r#"{"Statement": []}"#).contains("Version is required"));
        assert!(err(r#"{"Version": "2012-10-17", "Statement": []}"#).contains("Statement is empty"));
        let allow = |effect: &str, principal: serde_json::Value, action: &str| {
            policy(serde_json::json!({"Effect": effect, "Principal": principal, "Action": action}))
        };
        let get = "imagebuilder:GetComponent";
        assert!(err(&allow("Deny", serde_json::json!({"AWS": OTHER}), get)).contains("Effect"));
        assert!(err(&allow("Allow", serde_json::json!("*"), get)).contains("Principal must be"));
        assert!(
            err(&allow("Allow", serde_json::json!({"Service": "x"}), get))
                .contains("Principal.Service")
        );
        for p in [
            "12345",
            "arn:aws:iam::222222222222:user/bob",
            "arn:aws:iam::2222:root",
        ] {
            assert!(
                err(&allow("Allow", serde_json::json!({"AWS": p}), get)).contains("not an account"),
                "{p}"
            );
        }
        assert!(err(&allow("Allow", serde_json::json!({"AWS": OWNER}), get)).contains("owner"));
        let wrong = err(&allow(
            "Allow",
            serde_json::json!({"AWS": OTHER}),
            "imagebuilder:DeleteComponent",
        ));
        assert!(
            wrong.contains("Action 'imagebuilder:DeleteComponent' is not allowed for a component")
        );
        assert!(err(&allow(
            "Allow",
            serde_json::json!({"AWS": OTHER}),
            "imagebuilder:GetImage"
        ))
        .contains("not allowed"));
        let elsewhere = policy(serde_json::json!({
            "Effect": "Allow", "Principal": {"AWS": OTHER}, "Action": get,
            "Resource": format!("arn:aws:imagebuilder:us-east-1:{OWNER}:component/c/1.0.0/2")
        }));
        assert!(err(&elsewhere).contains("Resource"));
        let condition = policy(serde_json::json!({
            "Effect": "Allow", "Principal": {"AWS": OTHER}, "Action": get, "Condition": {}
        }));
        assert!(err(&condition).contains("Condition is not supported"));
    }

    #[test]
    fn keys_are_one_name_segment_per_resource_and_grantee() {
        let key = ResourcePolicy::key(&component());
        assert_eq!(
            key.to_string(),
            format!(
                "arn:aws:imagebuilder:us-east-1:{OWNER}:resource-policy/policy+component+c+1.0.0+1"
            )
        );
        assert_eq!(Arn::parse(&key.to_string()).unwrap(), key);
        let grant = ShareGrant::key(OTHER, &component());
        assert_eq!(grant.account, OTHER);
        assert_eq!(grant.name, format!("grant+{OWNER}+component+c+1.0.0+1"));
    }
}
