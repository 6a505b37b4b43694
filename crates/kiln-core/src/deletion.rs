//! Deleting an Image Builder image record: what DeleteImage does and what a lifecycle DELETE
//! action does after the image's AMIs and container images are gone. One function, so the two
//! never drift apart.

use crate::error::{CoreError, CoreResult};
use kiln_domain::resources::image::{Image, ImageStatus};
use kiln_domain::resources::Millis;
use kiln_store::{Txn, TxnExt};

/// Marks `image` DELETED and forgets what hangs off it: its scan findings, its workflow
/// executions, its resource policy; then queues it for the worker, which removes the image-store entry and then the
/// record. The caller has checked that no build is running and nothing refers to the image.
pub fn delete_image(tx: &mut dyn Txn, image: &mut Image, now: Millis) -> CoreResult<()> {
    image
        .advance(ImageStatus::Deleted, None, now)
        .map_err(|e| CoreError::Internal(e.to_string()))?;
    tx.put(image)?;
    // Its scan findings go with it (ListImageScanFindings no longer lists them).
    crate::scans::forget(tx, image)?;
    // Its workflow executions go with it (GetWorkflowExecution no longer finds them).
    crate::workflow_runs::remove_of_image(tx, &image.arn)?;
    // Its resource policy and the grants it made go with it.
    crate::sharing::remove_policy(tx, &image.arn)?;
    // The worker removes the image-store entry, then the record.
    tx.enqueue_build(&image.arn.to_string(), now)?;
    Ok(())
}
