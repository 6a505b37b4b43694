//! Infrastructure configurations: Create, Get, List, Update, Delete.

use crate::convert::list_own;
use crate::convert::{
    check_dry_run, check_name_free, check_no_referrers, date, get_exact, new_arn, response_tags,
    StoreResultExt,
};
use crate::filters::Filters;
use crate::service::Service;
use kiln_domain::arn::ResourceKind;
use kiln_domain::instance_types;
use kiln_domain::resources::infrastructure::{
    AutoScalingGroup, InfrastructureConfiguration as Infra,
    InstanceMetadataOptions as DomainMetadata, Placement as DomainPlacement,
    S3Logs as DomainS3Logs,
};
use kiln_store::{Txn, TxnExt};
use kiln_wire::types::*;
use kiln_wire::{ApiError, ErrorKind, RequestContext};

const KIND: ResourceKind = ResourceKind::InfrastructureConfiguration;

/// The settings shared by Create and Update requests.
struct Settings {
    description: Option<String>,
    instance_types: Option<Vec<String>>,
    instance_profile_name: Option<String>,
    security_group_ids: Option<Vec<String>>,
    subnet_id: Option<String>,
    logging: Option<Logging>,
    key_pair: Option<String>,
    terminate_instance_on_failure: Option<bool>,
    terminate_instance_on_completion: Option<bool>,
    sns_topic_arn: Option<String>,
    resource_tags: Option<std::collections::BTreeMap<String, String>>,
    instance_metadata_options: Option<InstanceMetadataOptions>,
    placement: Option<Placement>,
    parent_instance: Option<ParentInstanceConfiguration>,
}

fn apply(infra: &mut Infra, s: Settings) {
    infra.description = s.description;
    infra.instance_types = s.instance_types.unwrap_or_default();
    infra.instance_profile_name = s.instance_profile_name.unwrap_or_default();
    infra.security_group_ids = s.security_group_ids.unwrap_or_default();
    infra.subnet_id = s.subnet_id;
    infra.logging = s.logging.and_then(|l| l.s3_logs).map(|l| DomainS3Logs {
        s3_bucket_name: l.s3_bucket_name,
        s3_key_prefix: l.s3_key_prefix,
    });
    infra.key_pair = s.key_pair;
    // Documented default: "the default is true".
    infra.terminate_instance_on_failure = s.terminate_instance_on_failure.unwrap_or(true);
    infra.terminate_instance_on_completion = s.terminate_instance_on_completion;
    infra.sns_topic_arn = s.sns_topic_arn;
    infra.resource_tags = s.resource_tags.unwrap_or_default();
    infra.instance_metadata_options = s.instance_metadata_options.map(|m| DomainMetadata {
        http_tokens: m.http_tokens,
        http_put_response_hop_limit: m.http_put_response_hop_limit,
    });
    infra.placement = s.placement.map(|p| DomainPlacement {
        availability_zone: p.availability_zone,
        tenancy: p.tenancy.map(|t| t.as_str().to_string()),
        host_id: p.host_id,
        host_resource_group_arn: p.host_resource_group_arn,
    });
    infra.parent_instance = s
        .parent_instance
        .and_then(|p| p.auto_scaling_group)
        .map(|g| AutoScalingGroup {
            name: g.name.unwrap_or_default(),
            capacity_wait_timeout_seconds: g.capacity_wait_timeout_seconds,
        });
}

fn check_settings(s: &Settings) -> Result<(), ApiError> {
    check_instance_types(s.instance_types.as_deref().unwrap_or_default())?;
    if let Some(http_tokens) = s
        .instance_metadata_options
        .as_ref()
        .and_then(|m| m.http_tokens.as_deref())
    {
        if http_tokens != "required" && http_tokens != "optional" {
            return Err(ApiError::invalid_request(format!(
                "instanceMetadataOptions.httpTokens: '{http_tokens}' must be 'required' or 'optional'"
            )));
        }
    }
    Ok(())
}

/// A build instance's limits come from its type's size, so a type without a known size could
/// only fail later, at build time; it is refused here, naming it.
fn check_instance_types(types: &[String]) -> Result<(), ApiError> {
    for (i, name) in types.iter().enumerate() {
        if instance_types::lookup(name).is_none() {
            let families: Vec<&str> = instance_types::families().collect();
            return Err(ApiError::new(
                ErrorKind::InvalidParameterValueException,
                format!(
                    "instanceTypes[{i}]: '{name}' is not an instance type Kiln knows; it knows the families {} in their common sizes (for example t3.micro, m5.large, c6i.2xlarge)",
                    families.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn placement_to_wire(p: &DomainPlacement) -> Placement {
    Placement {
        availability_zone: p.availability_zone.clone(),
        tenancy: p.tenancy.as_deref().and_then(TenancyType::from_wire),
        host_id: p.host_id.clone(),
        host_resource_group_arn: p.host_resource_group_arn.clone(),
    }
}

fn non_empty<T: Clone>(v: &[T]) -> Option<Vec<T>> {
    (!v.is_empty()).then(|| v.to_vec())
}

pub(crate) fn to_wire(
    tx: &mut dyn Txn,
    infra: &Infra,
) -> Result<InfrastructureConfiguration, ApiError> {
    let arn = infra.arn.to_string();
    Ok(InfrastructureConfiguration {
        arn: Some(arn.clone()),
        name: Some(infra.name.clone()),
        description: infra.description.clone(),
        instance_types: non_empty(&infra.instance_types),
        instance_profile_name: Some(infra.instance_profile_name.clone()),
        security_group_ids: non_empty(&infra.security_group_ids),
        subnet_id: infra.subnet_id.clone(),
        logging: infra.logging.as_ref().map(|l| Logging {
            s3_logs: Some(S3Logs {
                s3_bucket_name: l.s3_bucket_name.clone(),
                s3_key_prefix: l.s3_key_prefix.clone(),
            }),
        }),
        key_pair: infra.key_pair.clone(),
        terminate_instance_on_failure: Some(infra.terminate_instance_on_failure),
        terminate_instance_on_completion: infra.terminate_instance_on_completion,
        sns_topic_arn: infra.sns_topic_arn.clone(),
        date_created: Some(date(infra.date_created)),
        date_updated: infra.date_updated.map(date),
        resource_tags: (!infra.resource_tags.is_empty()).then(|| infra.resource_tags.clone()),
        instance_metadata_options: infra.instance_metadata_options.as_ref().map(|m| {
            InstanceMetadataOptions {
                http_tokens: m.http_tokens.clone(),
                http_put_response_hop_limit: m.http_put_response_hop_limit,
            }
        }),
        tags: response_tags(tx, &arn)?,
        placement: infra.placement.as_ref().map(placement_to_wire),
        parent_instance: infra
            .parent_instance
            .as_ref()
            .map(|g| ParentInstanceConfiguration {
                auto_scaling_group: Some(AutoScalingGroupConfiguration {
                    name: Some(g.name.clone()),
                    capacity_wait_timeout_seconds: g.capacity_wait_timeout_seconds,
                }),
            }),
    })
}

pub fn create(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: CreateInfrastructureConfigurationRequest,
) -> Result<CreateInfrastructureConfigurationResponse, ApiError> {
    let name = input.name.clone().unwrap_or_default();
    check_name_free(tx, ctx, KIND, &name)?;
    let settings = Settings {
        description: input.description,
        instance_types: input.instance_types,
        instance_profile_name: input.instance_profile_name,
        security_group_ids: input.security_group_ids,
        subnet_id: input.subnet_id,
        logging: input.logging,
        key_pair: input.key_pair,
        terminate_instance_on_failure: input.terminate_instance_on_failure,
        terminate_instance_on_completion: input.terminate_instance_on_completion,
        sns_topic_arn: input.sns_topic_arn,
        resource_tags: input.resource_tags,
        instance_metadata_options: input.instance_metadata_options,
        placement: input.placement,
        parent_instance: input.parent_instance,
    };
    check_settings(&settings)?;
    check_dry_run(input.dry_run, "CreateInfrastructureConfiguration")?;
    let arn = new_arn(ctx, KIND, &name);
    let mut infra = Infra {
        arn: arn.clone(),
        name,
        description: None,
        instance_types: Vec::new(),
        instance_profile_name: String::new(),
        security_group_ids: Vec::new(),
        subnet_id: None,
        logging: None,
        key_pair: None,
        terminate_instance_on_failure: true,
        terminate_instance_on_completion: None,
        sns_topic_arn: None,
        resource_tags: Default::default(),
        instance_metadata_options: None,
        placement: None,
        parent_instance: None,
        date_created: ctx.now_millis,
        date_updated: None,
    };
    apply(&mut infra, settings);
    tx.put_tagged(&infra, input.tags.as_ref()).api()?;
    Ok(CreateInfrastructureConfigurationResponse {
        request_id: None,
        client_token: input.client_token,
        infrastructure_configuration_arn: Some(arn.to_string()),
    })
}

pub fn get(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: GetInfrastructureConfigurationRequest,
) -> Result<GetInfrastructureConfigurationResponse, ApiError> {
    let arn = input.infrastructure_configuration_arn.unwrap_or_default();
    let infra: Infra = get_exact(tx, ctx, KIND, &arn, "infrastructureConfigurationArn")?;
    Ok(GetInfrastructureConfigurationResponse {
        request_id: None,
        infrastructure_configuration: Some(to_wire(tx, &infra)?),
    })
}

pub fn list(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: ListInfrastructureConfigurationsRequest,
) -> Result<ListInfrastructureConfigurationsResponse, ApiError> {
    const OP: &str = "ListInfrastructureConfigurations";
    let filters = Filters::parse(input.filters.as_ref(), &["name"])?;
    let after = svc.pager.decode(OP, ctx, input.next_token.as_deref())?;
    let all: Vec<Infra> = list_own(tx, ctx, KIND, None, after)?;
    let matching = all
        .into_iter()
        .filter(|i| filters.accept(|_| Some(i.name.clone())));
    let page = svc
        .pager
        .page(OP, ctx, matching, input.max_results, |i| i.arn.to_string());
    let mut summaries = Vec::with_capacity(page.items.len());
    for infra in &page.items {
        let arn = infra.arn.to_string();
        summaries.push(InfrastructureConfigurationSummary {
            arn: Some(arn.clone()),
            name: Some(infra.name.clone()),
            description: infra.description.clone(),
            date_created: Some(date(infra.date_created)),
            date_updated: infra.date_updated.map(date),
            resource_tags: (!infra.resource_tags.is_empty()).then(|| infra.resource_tags.clone()),
            tags: response_tags(tx, &arn)?,
            instance_types: non_empty(&infra.instance_types),
            instance_profile_name: Some(infra.instance_profile_name.clone()),
            placement: infra.placement.as_ref().map(placement_to_wire),
        });
    }
    Ok(ListInfrastructureConfigurationsResponse {
        request_id: None,
        infrastructure_configuration_summary_list: Some(summaries),
        next_token: page.next_token,
    })
}

pub fn update(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: UpdateInfrastructureConfigurationRequest,
) -> Result<UpdateInfrastructureConfigurationResponse, ApiError> {
    let arn = input
        .infrastructure_configuration_arn
        .clone()
        .unwrap_or_default();
    let mut infra: Infra = get_exact(tx, ctx, KIND, &arn, "infrastructureConfigurationArn")?;
    let settings = Settings {
        description: input.description,
        instance_types: input.instance_types,
        instance_profile_name: input.instance_profile_name,
        security_group_ids: input.security_group_ids,
        subnet_id: input.subnet_id,
        logging: input.logging,
        key_pair: input.key_pair,
        terminate_instance_on_failure: input.terminate_instance_on_failure,
        terminate_instance_on_completion: input.terminate_instance_on_completion,
        sns_topic_arn: input.sns_topic_arn,
        resource_tags: input.resource_tags,
        instance_metadata_options: input.instance_metadata_options,
        placement: input.placement,
        parent_instance: input.parent_instance,
    };
    check_settings(&settings)?;
    apply(&mut infra, settings);
    infra.date_updated = Some(ctx.now_millis);
    tx.put(&infra).api()?;
    Ok(UpdateInfrastructureConfigurationResponse {
        request_id: None,
        // AWS answers an update with its ARN only, not the client token (the aws CLI examples).
        client_token: None,
        infrastructure_configuration_arn: Some(arn),
    })
}

pub fn delete(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: DeleteInfrastructureConfigurationRequest,
) -> Result<DeleteInfrastructureConfigurationResponse, ApiError> {
    let arn = input.infrastructure_configuration_arn.unwrap_or_default();
    let _: Infra = get_exact(tx, ctx, KIND, &arn, "infrastructureConfigurationArn")?;
    check_no_referrers(tx, &arn, KIND.label())?;
    tx.delete_row(&arn).api()?;
    Ok(DeleteInfrastructureConfigurationResponse {
        request_id: None,
        infrastructure_configuration_arn: Some(arn),
    })
}
