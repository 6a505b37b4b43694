//! IAM role trust policies (`AssumeRolePolicyDocument`), as far as Kiln acts on them: which
//! accounts a role lets assume it.
//!
//! Kiln's one IAM role is an account's consent to cross-account distribution
//! (`EC2ImageBuilderDistributionCrossAccountRole`, see `kiln_core::iam_roles`): account B's
//! role trusting account A lets A's distributions copy AMIs into B and write B's SSM
//! parameters. The trust policy is parsed here and evaluated as IAM evaluates a trust policy
//! for `sts:AssumeRole`: an explicit Deny wins over an Allow, and nothing is allowed without an
//! Allow. Members Kiln cannot evaluate (`Condition`, `NotPrincipal`, `NotAction`) are refused
//! when the policy is given, rather than ignored.

use serde_json::Value;

/// The longest trust policy IAM accepts (its quota, in characters).
pub const MAX_POLICY_CHARS: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustPolicy {
    statements: Vec<Statement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Statement {
    allow: bool,
    /// Account ids, or `*` for everyone.
    accounts: Vec<String>,
    /// Whether the statement's actions include `sts:AssumeRole`.
    assume_role: bool,
}

/// Why a policy document was refused (IAM's `MalformedPolicyDocument`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

fn bad(message: impl Into<String>) -> PolicyError {
    PolicyError(message.into())
}

impl TrustPolicy {
    pub fn parse(text: &str) -> Result<TrustPolicy, PolicyError> {
        if text.chars().count() > MAX_POLICY_CHARS {
            return Err(bad(format!(
                "the policy has more than {MAX_POLICY_CHARS} characters"
            )));
        }
        let value: Value = serde_json::from_str(text)
            .map_err(|e| bad(format!("the policy is not valid JSON: {e}")))?;
        let Value::Object(document) = value else {
            return Err(bad("the policy must be a JSON object"));
        };
        for key in document.keys() {
            if !matches!(key.as_str(), "Version" | "Id" | "Statement") {
                return Err(bad(format!("unknown policy member '{key}'")));
            }
        }
        if let Some(version) = document.get("Version") {
            if !matches!(version.as_str(), Some("2012-10-17" | "2008-10-17")) {
                return Err(bad(
                    "Version must be \"2012-10-17\" (or the older \"2008-10-17\")",
                ));
            }
        }
        let statements = match document.get("Statement") {
            Some(Value::Array(list)) => list.iter().collect::<Vec<_>>(),
            Some(one @ Value::Object(_)) => vec![one],
            Some(_) => return Err(bad("Statement must be an object or a list of objects")),
            None => return Err(bad("the policy has no Statement")),
        };
        if statements.is_empty() {
            return Err(bad("the policy's Statement list is empty"));
        }
        let statements = statements
            .into_iter()
            .enumerate()
            .map(|(i, s)| statement(i, s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustPolicy { statements })
    }

    /// Whether the policy lets account `account` assume the role.
    pub fn trusts(&self, account: &str) -> bool {
        let names =
            |s: &&Statement| s.assume_role && s.accounts.iter().any(|a| a == "*" || a == account);
        let denied = self
            .statements
            .iter()
            .filter(|s| !s.allow)
            .any(|s| names(&s));
        let allowed = self
            .statements
            .iter()
            .filter(|s| s.allow)
            .any(|s| names(&s));
        allowed && !denied
    }
}

fn statement(index: usize, value: &Value) -> Result<Statement, PolicyError> {
    let at = |m: &str| format!("Statement[{index}]: {m}");
    let Value::Object(s) = value else {
        return Err(bad(at("a statement must be a JSON object")));
    };
    for key in s.keys() {
        match key.as_str() {
            "Sid" | "Effect" | "Principal" | "Action" => {}
            "Condition" | "NotPrincipal" | "NotAction" => {
                return Err(bad(at(&format!(
                    "Kiln does not evaluate {key} in trust policies; name the trusted accounts in Principal.AWS and the action sts:AssumeRole"
                ))))
            }
            "Resource" | "NotResource" => {
                return Err(bad(at(&format!("a trust policy has no {key}"))))
            }
            other => return Err(bad(at(&format!("unknown statement member '{other}'")))),
        }
    }
    let allow = match s.get("Effect").and_then(Value::as_str) {
        Some("Allow") => true,
        Some("Deny") => false,
        _ => return Err(bad(at("Effect must be \"Allow\" or \"Deny\""))),
    };
    let principal = s
        .get("Principal")
        .ok_or_else(|| bad(at("the statement has no Principal")))?;
    let accounts = match principal {
        Value::String(star) if star == "*" => vec!["*".to_string()],
        Value::Object(p) => {
            let mut accounts = Vec::new();
            for (kind, names) in p {
                let names = strings(names).ok_or_else(|| {
                    bad(at(&format!("Principal.{kind} must be a string or a list of strings")))
                })?;
                match kind.as_str() {
                    "AWS" => {
                        for name in names {
                            accounts.push(principal_account(name).map_err(|m| bad(at(&m)))?);
                        }
                    }
                    // Valid in a trust policy, but no account distributes through them.
                    "Service" | "Federated" | "CanonicalUser" => {}
                    other => return Err(bad(at(&format!("unknown principal type '{other}'")))),
                }
            }
            accounts
        }
        _ => return Err(bad(at("Principal must be \"*\" or an object such as {\"AWS\": \"arn:aws:iam::111122223333:root\"}"))),
    };
    let actions = s
        .get("Action")
        .and_then(strings)
        .ok_or_else(|| bad(at("Action must be a string or a list of strings")))?;
    let assume_role = actions.iter().any(|a| {
        let a = a.to_ascii_lowercase();
        a == "*" || a == "sts:*" || a == "sts:assumerole"
    });
    Ok(Statement {
        allow,
        accounts,
        assume_role,
    })
}

fn strings(value: &Value) -> Option<Vec<&str>> {
    match value {
        Value::String(s) => Some(vec![s.as_str()]),
        Value::Array(list) => list.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

/// The account of an `AWS` principal: a 12-digit account id, `*`, or an IAM ARN
/// (`arn:aws:iam::<account>:root`, `...:role/...`, `...:user/...`).
fn principal_account(name: &str) -> Result<String, String> {
    if name == "*" {
        return Ok("*".to_string());
    }
    let account = match name.strip_prefix("arn:") {
        Some(rest) => {
            let parts: Vec<&str> = rest.splitn(5, ':').collect();
            match parts.as_slice() {
                [_, "iam", "", account, resource] if !resource.is_empty() => *account,
                _ => {
                    return Err(format!(
                        "'{name}' is not an IAM principal ARN (arn:aws:iam::<account>:root)"
                    ))
                }
            }
        }
        None => name,
    };
    if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) {
        Ok(account.to_string())
    } else {
        Err(format!(
            "'{name}' does not name an account (a 12-digit id or arn:aws:iam::<account>:root)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "111122223333";
    const B: &str = "444455556666";

    fn policy(statements: &str) -> Result<TrustPolicy, PolicyError> {
        TrustPolicy::parse(&format!(
            r#"{{"Version":"2012-10-17","Statement":{statements}}}"#
        ))
    }

    #[test]
    fn accounts_named_by_id_or_arn_are_trusted() {
        let p = policy(&format!(
            r#"[{{"Effect":"Allow","Principal":{{"AWS":["arn:aws:iam::{A}:root","{B}"]}},"Action":"sts:AssumeRole"}}]"#
        ))
        .unwrap();
        assert!(p.trusts(A) && p.trusts(B));
        assert!(!p.trusts("777788889999"));
        let role = policy(&format!(
            r#"{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{A}:role/aws-service-role/imagebuilder.amazonaws.com/AWSServiceRoleForImageBuilder"}},"Action":["sts:AssumeRole"]}}"#
        ))
        .unwrap();
        assert!(role.trusts(A) && !role.trusts(B));
    }

    #[test]
    fn deny_wins_and_other_actions_or_services_do_not_trust() {
        let p = policy(&format!(
            r#"[{{"Effect":"Allow","Principal":"*","Action":"sts:*"}},{{"Effect":"Deny","Principal":{{"AWS":"{B}"}},"Action":"sts:AssumeRole"}}]"#
        ))
        .unwrap();
        assert!(p.trusts(A));
        assert!(!p.trusts(B));
        let tag_only = policy(&format!(
            r#"{{"Effect":"Allow","Principal":{{"AWS":"{A}"}},"Action":"sts:TagSession"}}"#
        ))
        .unwrap();
        assert!(!tag_only.trusts(A));
        let service = policy(
            r#"{"Effect":"Allow","Principal":{"Service":"imagebuilder.amazonaws.com"},"Action":"sts:AssumeRole"}"#,
        )
        .unwrap();
        assert!(!service.trusts(A));
    }

    #[test]
    fn what_kiln_cannot_evaluate_is_refused() {
        for (statements, expected) in [
            (
                r#"{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"sts:AssumeRole","Condition":{"StringEquals":{"sts:ExternalId":"x"}}}"#,
                "Condition",
            ),
            (
                r#"{"Effect":"Allow","NotPrincipal":{"AWS":"111122223333"},"Action":"sts:AssumeRole"}"#,
                "NotPrincipal",
            ),
            (
                r#"{"Effect":"Maybe","Principal":"*","Action":"sts:AssumeRole"}"#,
                "Effect",
            ),
            (
                r#"{"Effect":"Allow","Principal":{"AWS":"12345"},"Action":"sts:AssumeRole"}"#,
                "12345",
            ),
            (
                r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:s3:::bucket"},"Action":"sts:AssumeRole"}"#,
                "not an IAM principal",
            ),
            (
                r#"{"Effect":"Allow","Principal":{"AWS":"111122223333"}}"#,
                "Action",
            ),
            (r#"[]"#, "empty"),
        ] {
            let e = policy(statements).unwrap_err();
            assert!(e.0.contains(expected), "{statements}: {e}");
        }
        assert!(TrustPolicy::parse("not json")
            .unwrap_err()
            .0
            .contains("JSON"));
        assert!(TrustPolicy::parse(r#"{"Statement":[],"Extra":1}"#).is_err());
        assert!(TrustPolicy::parse(&"x".repeat(MAX_POLICY_CHARS + 1)).is_err());
    }
}
