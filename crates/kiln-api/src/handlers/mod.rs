//! The operations Kiln implements, one module per resource type.
//!
//! `Handlers` (generated) has one method per operation of the model, each defaulting to "not
//! implemented yet"; the impl below routes the implemented ones to a function in the module of
//! their resource. Each function receives the call's transaction: reads see one snapshot, and
//! everything a write does commits together or not at all.

use crate::service::Service;
use kiln_store::{Read, Txn};
use kiln_wire::types::*;
use kiln_wire::{ApiError, Handlers, Operation, RequestContext};

pub mod components;
pub mod container_recipes;
pub mod distribute;
pub mod distribution;
pub mod image_recipes;
pub mod images;
pub mod import_component;
pub mod imports;
pub mod infrastructure;
mod lifecycle_convert;
pub mod lifecycle_executions;
pub mod lifecycle_policies;
pub mod pipelines;
pub mod resource_state;
pub mod scan_findings;
pub mod sharing;
pub mod tags;
pub mod workflow_executions;
pub mod workflows;
mod yaml_document;

/// The reads an operation's handler makes first, where naming them ahead pays (see
/// `Txn::prefetch`): on a shared database they then cost one round trip in all (under the
/// writer lock, for a write; with the `BEGIN`, for a read) instead of one each.
pub fn reads_ahead(op: Operation, ctx: &RequestContext, input: &serde_json::Value) -> Vec<Read> {
    match op {
        Operation::CreateImagePipeline => pipelines::create_reads(ctx, input),
        Operation::GetImagePipeline => pipelines::get_reads(ctx, input),
        _ => Vec::new(),
    }
}

macro_rules! delegate {
    ($($method:ident => $function:path : $input:ident -> $output:ident;)*) => {
        $(
            fn $method(&self, ctx: &RequestContext, tx: &mut Self::Tx, input: $input) -> Result<$output, ApiError> {
                $function(self, ctx, tx, input)
            }
        )*
    };
}

impl Handlers for Service {
    type Tx = dyn Txn;

    delegate! {
        create_component => components::create: CreateComponentRequest -> CreateComponentResponse;
        get_component => components::get: GetComponentRequest -> GetComponentResponse;
        list_components => components::list: ListComponentsRequest -> ListComponentsResponse;
        list_component_build_versions => components::list_build_versions: ListComponentBuildVersionsRequest -> ListComponentBuildVersionsResponse;
        delete_component => components::delete: DeleteComponentRequest -> DeleteComponentResponse;
        import_component => import_component::import: ImportComponentRequest -> ImportComponentResponse;

        create_image_recipe => image_recipes::create: CreateImageRecipeRequest -> CreateImageRecipeResponse;
        get_image_recipe => image_recipes::get: GetImageRecipeRequest -> GetImageRecipeResponse;
        list_image_recipes => image_recipes::list: ListImageRecipesRequest -> ListImageRecipesResponse;
        delete_image_recipe => image_recipes::delete: DeleteImageRecipeRequest -> DeleteImageRecipeResponse;

        create_container_recipe => container_recipes::create: CreateContainerRecipeRequest -> CreateContainerRecipeResponse;
        get_container_recipe => container_recipes::get: GetContainerRecipeRequest -> GetContainerRecipeResponse;
        list_container_recipes => container_recipes::list: ListContainerRecipesRequest -> ListContainerRecipesResponse;
        delete_container_recipe => container_recipes::delete: DeleteContainerRecipeRequest -> DeleteContainerRecipeResponse;

        create_infrastructure_configuration => infrastructure::create: CreateInfrastructureConfigurationRequest -> CreateInfrastructureConfigurationResponse;
        get_infrastructure_configuration => infrastructure::get: GetInfrastructureConfigurationRequest -> GetInfrastructureConfigurationResponse;
        list_infrastructure_configurations => infrastructure::list: ListInfrastructureConfigurationsRequest -> ListInfrastructureConfigurationsResponse;
        update_infrastructure_configuration => infrastructure::update: UpdateInfrastructureConfigurationRequest -> UpdateInfrastructureConfigurationResponse;
        delete_infrastructure_configuration => infrastructure::delete: DeleteInfrastructureConfigurationRequest -> DeleteInfrastructureConfigurationResponse;

        create_distribution_configuration => distribution::create: CreateDistributionConfigurationRequest -> CreateDistributionConfigurationResponse;
        get_distribution_configuration => distribution::get: GetDistributionConfigurationRequest -> GetDistributionConfigurationResponse;
        list_distribution_configurations => distribution::list: ListDistributionConfigurationsRequest -> ListDistributionConfigurationsResponse;
        update_distribution_configuration => distribution::update: UpdateDistributionConfigurationRequest -> UpdateDistributionConfigurationResponse;
        delete_distribution_configuration => distribution::delete: DeleteDistributionConfigurationRequest -> DeleteDistributionConfigurationResponse;

        create_workflow => workflows::create: CreateWorkflowRequest -> CreateWorkflowResponse;
        get_workflow => workflows::get: GetWorkflowRequest -> GetWorkflowResponse;
        list_workflows => workflows::list: ListWorkflowsRequest -> ListWorkflowsResponse;
        list_workflow_build_versions => workflows::list_build_versions: ListWorkflowBuildVersionsRequest -> ListWorkflowBuildVersionsResponse;
        delete_workflow => workflows::delete: DeleteWorkflowRequest -> DeleteWorkflowResponse;

        list_workflow_executions => workflow_executions::list_executions: ListWorkflowExecutionsRequest -> ListWorkflowExecutionsResponse;
        get_workflow_execution => workflow_executions::get_execution: GetWorkflowExecutionRequest -> GetWorkflowExecutionResponse;
        list_workflow_step_executions => workflow_executions::list_step_executions: ListWorkflowStepExecutionsRequest -> ListWorkflowStepExecutionsResponse;
        get_workflow_step_execution => workflow_executions::get_step_execution: GetWorkflowStepExecutionRequest -> GetWorkflowStepExecutionResponse;
        list_waiting_workflow_steps => workflow_executions::list_waiting_steps: ListWaitingWorkflowStepsRequest -> ListWaitingWorkflowStepsResponse;
        send_workflow_step_action => workflow_executions::send_step_action: SendWorkflowStepActionRequest -> SendWorkflowStepActionResponse;

        create_image_pipeline => pipelines::create: CreateImagePipelineRequest -> CreateImagePipelineResponse;
        get_image_pipeline => pipelines::get: GetImagePipelineRequest -> GetImagePipelineResponse;
        list_image_pipelines => pipelines::list: ListImagePipelinesRequest -> ListImagePipelinesResponse;
        update_image_pipeline => pipelines::update: UpdateImagePipelineRequest -> UpdateImagePipelineResponse;
        delete_image_pipeline => pipelines::delete: DeleteImagePipelineRequest -> DeleteImagePipelineResponse;
        list_image_pipeline_images => images::list_pipeline_images: ListImagePipelineImagesRequest -> ListImagePipelineImagesResponse;
        start_image_pipeline_execution => images::start_pipeline_execution: StartImagePipelineExecutionRequest -> StartImagePipelineExecutionResponse;

        create_image => images::create: CreateImageRequest -> CreateImageResponse;
        get_image => images::get: GetImageRequest -> GetImageResponse;
        list_images => images::list: ListImagesRequest -> ListImagesResponse;
        list_image_build_versions => images::list_build_versions: ListImageBuildVersionsRequest -> ListImageBuildVersionsResponse;
        list_image_packages => images::list_packages: ListImagePackagesRequest -> ListImagePackagesResponse;
        cancel_image_creation => images::cancel: CancelImageCreationRequest -> CancelImageCreationResponse;
        delete_image => images::delete: DeleteImageRequest -> DeleteImageResponse;
        distribute_image => distribute::distribute: DistributeImageRequest -> DistributeImageResponse;
        retry_image => distribute::retry: RetryImageRequest -> RetryImageResponse;
        import_disk_image => imports::import_disk_image: ImportDiskImageRequest -> ImportDiskImageResponse;
        import_vm_image => imports::import_vm_image: ImportVmImageRequest -> ImportVmImageResponse;
        list_image_scan_findings => scan_findings::list: ListImageScanFindingsRequest -> ListImageScanFindingsResponse;
        list_image_scan_finding_aggregations => scan_findings::aggregations: ListImageScanFindingAggregationsRequest -> ListImageScanFindingAggregationsResponse;

        create_lifecycle_policy => lifecycle_policies::create: CreateLifecyclePolicyRequest -> CreateLifecyclePolicyResponse;
        get_lifecycle_policy => lifecycle_policies::get: GetLifecyclePolicyRequest -> GetLifecyclePolicyResponse;
        list_lifecycle_policies => lifecycle_policies::list: ListLifecyclePoliciesRequest -> ListLifecyclePoliciesResponse;
        update_lifecycle_policy => lifecycle_policies::update: UpdateLifecyclePolicyRequest -> UpdateLifecyclePolicyResponse;
        delete_lifecycle_policy => lifecycle_policies::delete: DeleteLifecyclePolicyRequest -> DeleteLifecyclePolicyResponse;
        list_lifecycle_executions => lifecycle_executions::list_executions: ListLifecycleExecutionsRequest -> ListLifecycleExecutionsResponse;
        get_lifecycle_execution => lifecycle_executions::get_execution: GetLifecycleExecutionRequest -> GetLifecycleExecutionResponse;
        list_lifecycle_execution_resources => lifecycle_executions::list_resources: ListLifecycleExecutionResourcesRequest -> ListLifecycleExecutionResourcesResponse;
        cancel_lifecycle_execution => lifecycle_executions::cancel: CancelLifecycleExecutionRequest -> CancelLifecycleExecutionResponse;
        put_component_policy => sharing::put_component_policy: PutComponentPolicyRequest -> PutComponentPolicyResponse;
        get_component_policy => sharing::get_component_policy: GetComponentPolicyRequest -> GetComponentPolicyResponse;
        put_image_policy => sharing::put_image_policy: PutImagePolicyRequest -> PutImagePolicyResponse;
        get_image_policy => sharing::get_image_policy: GetImagePolicyRequest -> GetImagePolicyResponse;
        put_image_recipe_policy => sharing::put_image_recipe_policy: PutImageRecipePolicyRequest -> PutImageRecipePolicyResponse;
        get_image_recipe_policy => sharing::get_image_recipe_policy: GetImageRecipePolicyRequest -> GetImageRecipePolicyResponse;
        put_container_recipe_policy => sharing::put_container_recipe_policy: PutContainerRecipePolicyRequest -> PutContainerRecipePolicyResponse;
        get_container_recipe_policy => sharing::get_container_recipe_policy: GetContainerRecipePolicyRequest -> GetContainerRecipePolicyResponse;
        start_resource_state_update => resource_state::start: StartResourceStateUpdateRequest -> StartResourceStateUpdateResponse;

        tag_resource => tags::tag: TagResourceRequest -> TagResourceResponse;
        untag_resource => tags::untag: UntagResourceRequest -> UntagResourceResponse;
        list_tags_for_resource => tags::list: ListTagsForResourceRequest -> ListTagsForResourceResponse;
    }
}
