//! DistributeImage and RetryImage: the distribution stage of an image, again or for another
//! configuration, without building.
//!
//! DistributeImage makes a new image (same name and version as the source, the next build
//! number) that tracks one distribution of the source's contents; RetryImage puts a FAILED or
//! CANCELLED AMI image back in the queue in place. Either way the worker resumes at the stage
//! the image records (`Image::resume_at`): a failed distribution is distributed again (AMIs it
//! already made are found by their ids, not made twice), anything else is built again.

use crate::convert::{caller, get_exact, StoreResultExt};
use crate::service::Service;
use kiln_core::images::{create_distribution_image, sync_pipeline_status};
use kiln_domain::arn::{Arn, ResourceKind};
use kiln_domain::resources::image::{Image, ImageStatus, ImageType};
use kiln_store::{Txn, TxnExt};
use kiln_wire::types::*;
use kiln_wire::{ApiError, ErrorKind, RequestContext};

fn invalid(message: String) -> ApiError {
    ApiError::new(ErrorKind::InvalidRequestException, message)
}

pub fn distribute(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: DistributeImageRequest,
) -> Result<DistributeImageResponse, ApiError> {
    if input.logging_configuration.is_some() {
        return Err(invalid(
            "loggingConfiguration: Kiln keeps every build's log itself (kiln logs <image ARN>); it has no CloudWatch log groups to write to".into(),
        ));
    }
    let source_text = input.source_image.unwrap_or_default();
    let source = source_image(tx, ctx, &source_text)?;
    let distribution_arn = input.distribution_configuration_arn.unwrap_or_default();
    let arn = create_distribution_image(
        tx,
        caller(ctx),
        &source,
        &distribution_arn,
        input.tags.as_ref(),
    )
    .api()?;
    Ok(DistributeImageResponse {
        client_token: input.client_token,
        image_build_version_arn: Some(arn.to_string()),
    })
}

/// The AVAILABLE image of the caller's account whose AMI `source` names: an `ami-` id, an
/// `ssm:<parameter>` holding one, or an Image Builder image ARN (a version ARN picks the newest
/// AVAILABLE build).
fn source_image(tx: &mut dyn Txn, ctx: &RequestContext, source: &str) -> Result<Image, ApiError> {
    let (account, region) = (ctx.account_id.as_str(), ctx.region.as_str());
    let ami_id = if let Some(parameter) = source.strip_prefix("ssm:") {
        let name = parameter
            .rsplit_once(":parameter")
            .map_or(parameter, |(_, name)| name);
        let value = kiln_core::amis::get_parameter(tx, account, region, name)
            .api()?
            .ok_or_else(|| {
                invalid(format!(
                    "sourceImage: the SSM parameter '{name}' does not exist in {region}"
                ))
            })?;
        value.value
    } else {
        source.to_string()
    };
    if ami_id.starts_with("ami-") {
        let ami = kiln_core::amis::find_launchable(tx, account, region, &ami_id)
            .api()?
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::ResourceNotFoundException,
                    format!("sourceImage: no AMI {ami_id} in {region} that your account may use"),
                )
            })?;
        if ami.disabled {
            return Err(invalid(format!(
                "sourceImage: the AMI {ami_id} is disabled; a disabled AMI cannot be distributed"
            )));
        }
        let image: Option<Image> = tx.get(&ami.source_image).api()?;
        if let Some(i) = image.as_ref().filter(|i| i.status == ImageStatus::Disabled) {
            return Err(disabled(&i.arn.to_string()));
        }
        return image
            .filter(|i| i.arn.account == account && i.status == ImageStatus::Available)
            .ok_or_else(|| {
                invalid(format!(
                    "sourceImage: {ami_id} was made by {}, which is not an AVAILABLE image of your account; DistributeImage distributes the AMIs of your own images",
                    ami.source_image
                ))
            });
    }
    let arn = Arn::parse(&ami_id).map_err(|_| {
        invalid(format!(
            "sourceImage: '{source}' is neither an AMI id (ami-...), an SSM parameter (ssm:<name>) nor an Image Builder image ARN"
        ))
    })?;
    if arn.kind != ResourceKind::Image {
        return Err(invalid(format!(
            "sourceImage: '{source}' is not an image ARN"
        )));
    }
    if arn.build.is_some() {
        let named: Option<Image> = tx.get(&arn.to_string()).api()?;
        if named.is_some_and(|i| i.status == ImageStatus::Disabled) {
            return Err(disabled(&ami_id));
        }
    }
    let image = kiln_core::parents::newest_available(tx, account, region, &arn)
        .map_err(|e| invalid(format!("sourceImage: {e}")))?;
    if image.image_type != ImageType::Ami {
        return Err(invalid(format!(
            "sourceImage: {} is a container image; DistributeImage distributes AMIs",
            image.arn
        )));
    }
    Ok(image)
}

/// A DISABLED image cannot be distributed (StartResourceStateUpdate to AVAILABLE makes it
/// usable again); a DEPRECATED one can.
fn disabled(arn: &str) -> ApiError {
    invalid(format!(
        "sourceImage: the image '{arn}' is DISABLED and cannot be distributed; set it AVAILABLE again with StartResourceStateUpdate"
    ))
}

pub fn retry(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: RetryImageRequest,
) -> Result<RetryImageResponse, ApiError> {
    let arn = input.image_build_version_arn.unwrap_or_default();
    let mut image: Image = get_exact(tx, ctx, ResourceKind::Image, &arn, "imageBuildVersionArn")?;
    if image.status == ImageStatus::Deleted {
        return Err(crate::convert::not_found(ResourceKind::Image, &arn));
    }
    if image.image_type != ImageType::Ami {
        return Err(invalid(format!(
            "imageBuildVersionArn: RetryImage supports AMI images only; '{arn}' is a container image"
        )));
    }
    image.retry(ctx.now_millis).map_err(|e| {
        ApiError::new(
            ErrorKind::ResourceInUseException,
            format!("imageBuildVersionArn: {e}"),
        )
    })?;
    // A cancelled build's worker may still be stopping it; its queue entry goes when it has.
    // An entry no worker claimed yet (cancelled before it started) simply runs the retry.
    let queued = tx.queued_builds().api()?;
    let entry = queued.iter().find(|(queued, _)| *queued == arn);
    if entry.is_some_and(|(_, worker)| worker.is_some()) {
        return Err(ApiError::new(
            ErrorKind::ResourceInUseException,
            format!(
                "imageBuildVersionArn: the last build of '{arn}' is still stopping; retry it in a moment"
            ),
        ));
    }
    let already_queued = entry.is_some();
    tx.put(&image).api()?;
    if !already_queued {
        tx.enqueue_build(&arn, ctx.now_millis).api()?;
    }
    sync_pipeline_status(tx, &image, ctx.now_millis).api()?;
    Ok(RetryImageResponse {
        client_token: input.client_token,
        image_build_version_arn: Some(arn),
    })
}
