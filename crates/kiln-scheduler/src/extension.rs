//! `GET /kiln/v1/schedule?imagePipelineArn=ARN`: what a pipeline's schedule did lately
//! (`kiln pipeline schedule ARN`). The Image Builder API has no member for why a firing was
//! skipped or why a pipeline disabled itself; this answers both, from the pipeline's record.

use kiln_core::extension::{is_callers, one_resource_query, rfc3339, Extension, ExtensionResponse};
use kiln_core::Caller;
use kiln_core::Core;
use kiln_domain::arn::ResourceKind;
use kiln_domain::resources::pipeline::{ImagePipeline, PipelineStatus};
use kiln_store::TxnExt;
use serde_json::json;
use std::sync::Arc;

pub struct ScheduleExtension {
    pub core: Arc<Core>,
}

impl Extension for ScheduleExtension {
    fn handle(
        &self,
        ctx: &Caller<'_>,
        path: &str,
        query: &[(String, String)],
    ) -> ExtensionResponse {
        let arn = match one_resource_query(path, "schedule", query, "imagePipelineArn") {
            Ok(arn) => arn,
            Err(answer) => return answer,
        };
        let found = if is_callers(ctx, arn, ResourceKind::ImagePipeline) {
            self.core.store.read(|tx| tx.get::<ImagePipeline>(arn))
        } else {
            Ok(Ok(None))
        };
        let pipeline = match found {
            Ok(Ok(Some(p))) => p,
            Ok(Ok(None)) => {
                return ExtensionResponse::error(
                    404,
                    "ResourceNotFoundException",
                    &format!("The image pipeline '{arn}' does not exist."),
                )
            }
            Ok(Err(e)) | Err(e) => {
                return ExtensionResponse::error(500, "ServiceException", &e.to_string())
            }
        };
        let schedule = pipeline.definition.schedule.as_ref();
        let events: Vec<_> = pipeline
            .schedule_events
            .iter()
            .map(|e| {
                json!({
                    "at": rfc3339(e.at),
                    "due": rfc3339(e.due),
                    "outcome": e.outcome.as_str(),
                    "imageBuildVersionArn": e.image_arn,
                    "reason": e.reason,
                })
            })
            .collect();
        ExtensionResponse::json(
            200,
            &json!({
                "imagePipelineArn": arn,
                "status": match pipeline.definition.status {
                    PipelineStatus::Enabled => "ENABLED",
                    PipelineStatus::Disabled => "DISABLED",
                },
                "scheduleExpression": schedule.map(|s| s.expression.clone()),
                "timezone": schedule.map(|s| s.timezone.clone()),
                "dateNextRun": pipeline.date_next_run.and_then(rfc3339),
                "consecutiveFailures": pipeline.consecutive_failures,
                "autoDisableFailureCount": schedule.map(|_| pipeline.auto_disable_limit()),
                "events": events,
            }),
        )
    }
}
