//! `GET /kiln/v1/lifecycle?lifecyclePolicyArn=ARN`: when a lifecycle policy runs next
//! (`kiln lifecycle schedule ARN`). The Image Builder API shows only `dateLastRun`; Kiln picks
//! the daily time itself, and this says which.

use super::start::running_of_policy;
use crate::extension::{is_callers, one_resource_query, rfc3339, Extension, ExtensionResponse};
use crate::{Caller, Core};
use kiln_domain::arn::ResourceKind;
use kiln_domain::resources::lifecycle::{LifecyclePolicy, PolicyStatus};
use kiln_store::TxnExt;
use serde_json::json;
use std::sync::Arc;

pub struct LifecycleExtension {
    pub core: Arc<Core>,
}

impl Extension for LifecycleExtension {
    fn handle(
        &self,
        ctx: &Caller<'_>,
        path: &str,
        query: &[(String, String)],
    ) -> ExtensionResponse {
        let arn = match one_resource_query(path, "lifecycle", query, "lifecyclePolicyArn") {
            Ok(arn) => arn,
            Err(answer) => return answer,
        };
        let found = if is_callers(ctx, arn, ResourceKind::LifecyclePolicy) {
            self.core.store.read(|tx| {
                let Some(policy) = tx.get::<LifecyclePolicy>(arn)? else {
                    return Ok(None);
                };
                let running = running_of_policy(tx, &policy)?.map(|e| e.id);
                Ok::<_, crate::CoreError>(Some((policy, running)))
            })
        } else {
            Ok(Ok(None))
        };
        let (policy, running) = match found {
            Ok(Ok(Some(p))) => p,
            Ok(Ok(None)) => {
                return ExtensionResponse::error(
                    404,
                    "ResourceNotFoundException",
                    &format!("The lifecycle policy '{arn}' does not exist."),
                )
            }
            Ok(Err(e)) => return ExtensionResponse::error(500, "ServiceException", &e.to_string()),
            Err(e) => return ExtensionResponse::error(500, "ServiceException", &e.to_string()),
        };
        let enabled = policy.status == PolicyStatus::Enabled;
        let next = policy.next_run.filter(|_| enabled);
        ExtensionResponse::json(
            200,
            &json!({
                "lifecyclePolicyArn": arn,
                "status": if enabled { "ENABLED" } else { "DISABLED" },
                "nextRun": next,
                "nextRunTime": next.and_then(rfc3339),
                "dateLastRun": policy.date_last_run.and_then(rfc3339),
                "runningExecutionId": running,
            }),
        )
    }
}
