//! The IAM role through which an account consents to cross-account distribution.
//!
//! On AWS, a distribution configuration's `targetAccountIds` (and an SSM parameter's
//! `amiAccountId`) work only if the target account created the role
//! `EC2ImageBuilderDistributionCrossAccountRole`, trusting the distributing account and with the
//! managed policy `Ec2ImageBuilderCrossAccountDistributionAccess` attached. Kiln keeps the same
//! consent: the target account creates that role through Kiln's IAM endpoint (`aws iam
//! create-role` with `--endpoint-url`), and distribution checks [`may_distribute`] before it
//! writes anything into another account. No other role exists in Kiln: one would be stored and
//! never used.
//!
//! Roles are settings (`kiln.iam-role/<account>/<name>`, JSON); a deleted role is an empty value.

use crate::error::{CoreError, CoreResult};
use kiln_domain::resources::Millis;
use kiln_domain::trust_policy::TrustPolicy;
use kiln_store::Txn;
use serde::{Deserialize, Serialize};

/// The role a target account creates to let other accounts distribute to it.
pub const DISTRIBUTION_ROLE: &str = "EC2ImageBuilderDistributionCrossAccountRole";

/// The managed policy that role needs attached.
pub const DISTRIBUTION_POLICY: &str =
    "arn:aws:iam::aws:policy/Ec2ImageBuilderCrossAccountDistributionAccess";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    pub path: String,
    /// `AROA` and 17 characters, as IAM's unique ids.
    pub role_id: String,
    pub description: Option<String>,
    /// The trust policy as given (JSON text); parsed by [`TrustPolicy`] when it was set.
    pub assume_role_policy: String,
    pub max_session_duration: u32,
    pub created: Millis,
    /// Managed policy ARNs attached.
    #[serde(default)]
    pub attached_policies: Vec<String>,
}

impl Role {
    pub fn arn(&self, account: &str) -> String {
        format!("arn:aws:iam::{account}:role{}{}", self.path, self.name)
    }
}

fn key(account: &str, name: &str) -> String {
    format!("kiln.iam-role/{account}/{name}")
}

pub fn get(tx: &mut dyn Txn, account: &str, name: &str) -> CoreResult<Option<Role>> {
    match tx.get_setting(&key(account, name))? {
        Some(text) if !text.is_empty() => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| CoreError::Internal(format!("reading the IAM role {name}: {e}"))),
        _ => Ok(None),
    }
}

pub fn put(tx: &mut dyn Txn, account: &str, role: &Role) -> CoreResult<()> {
    let text = serde_json::to_string(role)
        .map_err(|e| CoreError::Internal(format!("encoding an IAM role: {e}")))?;
    Ok(tx.put_setting(&key(account, &role.name), &text)?)
}

pub fn delete(tx: &mut dyn Txn, account: &str, name: &str) -> CoreResult<()> {
    Ok(tx.put_setting(&key(account, name), "")?)
}

/// Whether `source` may distribute into `target`: they are the same account, or `target` has
/// the distribution role, trusting `source`, with the distribution policy attached. `Err`
/// carries why not, for the distribution's failure message.
pub fn may_distribute(
    tx: &mut dyn Txn,
    target: &str,
    source: &str,
) -> CoreResult<Result<(), String>> {
    if target == source {
        return Ok(Ok(()));
    }
    let Some(role) = get(tx, target, DISTRIBUTION_ROLE)? else {
        return Ok(Err(format!(
            "account {target} has no role {DISTRIBUTION_ROLE}: it must create one that trusts account {source} (aws iam create-role) and attach {DISTRIBUTION_POLICY} before {source} can distribute to it"
        )));
    };
    let trusted = TrustPolicy::parse(&role.assume_role_policy).is_ok_and(|p| p.trusts(source));
    if !trusted {
        return Ok(Err(format!(
            "the role {DISTRIBUTION_ROLE} of account {target} does not trust account {source} (its trust policy must allow sts:AssumeRole to arn:aws:iam::{source}:root)"
        )));
    }
    if !role
        .attached_policies
        .iter()
        .any(|p| p == DISTRIBUTION_POLICY)
    {
        return Ok(Err(format!(
            "the role {DISTRIBUTION_ROLE} of account {target} does not have {DISTRIBUTION_POLICY} attached (aws iam attach-role-policy)"
        )));
    }
    Ok(Ok(()))
}
