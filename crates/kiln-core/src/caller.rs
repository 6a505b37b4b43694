//! Who asks, where and when: the account and region a request (or a scheduled run, which acts
//! for its pipeline's owner) is scoped to, and the time of the action.

use kiln_domain::arn::{Arn, ResourceKind};

#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub account_id: &'a str,
    pub region: &'a str,
    /// The service clock's reading for this action (milliseconds since the Unix epoch).
    pub now_millis: i64,
}

impl Caller<'_> {
    /// Whether `arn` names a resource of `kind` in the caller's account and region: anything
    /// else (another account's, another kind, not an Image Builder ARN) does not exist for the
    /// caller.
    pub fn owns(&self, arn: &str, kind: ResourceKind) -> bool {
        Arn::parse(arn).is_ok_and(|a| {
            a.kind == kind && a.account == self.account_id && a.region == self.region
        })
    }
}
