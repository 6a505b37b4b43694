//! Distribution configurations: Create, Get, List, Update, Delete.
//!
//! Requests are turned into the domain's records member by member, so everything a caller sets
//! reads back unchanged; the domain then checks the rules that span members and entries (one
//! entry per Region, an output in each entry, no AMI settings next to a container output, ...).
//! Update replaces the description and the whole list of distributions, as the API documents:
//! it has no selective update. Pipelines record a reference to the configuration they use, so
//! Delete refuses while one does.

use crate::convert::list_own;
use crate::convert::{
    check_dry_run, check_name_free, check_no_referrers, date, get_exact, new_arn, response_tags,
    StoreResultExt,
};
use crate::filters::Filters;
use crate::service::Service;
use kiln_domain::arn::ResourceKind;
use kiln_domain::resources::distribution::{
    self as domain, DistributionConfiguration as DistConfig, DistributionError,
};
use kiln_store::{Txn, TxnExt};
use kiln_wire::types::*;
use kiln_wire::{ApiError, ErrorKind, RequestContext};

const KIND: ResourceKind = ResourceKind::DistributionConfiguration;
const ARN_FIELD: &str = "distributionConfigurationArn";

/// The wire layer enforces `required` members before a handler runs; this keeps a gap in that
/// from ever becoming a panic.
fn required<T>(value: Option<T>, field: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::invalid_request(format!("{field}: this member is required")))
}

fn rule_error(e: DistributionError) -> ApiError {
    let kind = match e {
        DistributionError::Invalid { .. } => ErrorKind::InvalidRequestException,
        DistributionError::Conflict { .. } => ErrorKind::InvalidParameterCombinationException,
    };
    ApiError::new(kind, e.to_string())
}

/// Converts and checks the `distributions` of a Create or Update request.
fn distributions_from_wire(
    ctx: &RequestContext,
    wire: Option<Vec<Distribution>>,
) -> Result<Vec<domain::Distribution>, ApiError> {
    let distributions = required(wire, "distributions")?
        .into_iter()
        .enumerate()
        .map(|(i, d)| distribution_from_wire(d, &format!("distributions[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    domain::validate(&distributions, &ctx.account_id).map_err(rule_error)?;
    Ok(distributions)
}

fn distribution_from_wire(d: Distribution, at: &str) -> Result<domain::Distribution, ApiError> {
    Ok(domain::Distribution {
        region: required(d.region, &format!("{at}.region"))?,
        ami_distribution_configuration: d.ami_distribution_configuration.map(ami_from_wire),
        container_distribution_configuration: d
            .container_distribution_configuration
            .map(|c| container_from_wire(c, &format!("{at}.containerDistributionConfiguration")))
            .transpose()?,
        license_configuration_arns: d.license_configuration_arns,
        launch_template_configurations: d
            .launch_template_configurations
            .map(|list| {
                let at = format!("{at}.launchTemplateConfigurations");
                each(list, &at, launch_template_from_wire)
            })
            .transpose()?,
        s3_export_configuration: d
            .s3_export_configuration
            .map(|s| s3_export_from_wire(s, &format!("{at}.s3ExportConfiguration")))
            .transpose()?,
        fast_launch_configurations: d
            .fast_launch_configurations
            .map(|list| {
                let at = format!("{at}.fastLaunchConfigurations");
                each(list, &at, fast_launch_from_wire)
            })
            .transpose()?,
        ssm_parameter_configurations: d
            .ssm_parameter_configurations
            .map(|list| {
                let at = format!("{at}.ssmParameterConfigurations");
                each(list, &at, ssm_parameter_from_wire)
            })
            .transpose()?,
    })
}

/// Converts every item of a list, naming each by its index in errors.
fn each<W, D>(
    list: Vec<W>,
    at: &str,
    convert: impl Fn(W, &str) -> Result<D, ApiError>,
) -> Result<Vec<D>, ApiError> {
    list.into_iter()
        .enumerate()
        .map(|(j, item)| convert(item, &format!("{at}[{j}]")))
        .collect()
}

fn ami_from_wire(a: AmiDistributionConfiguration) -> domain::AmiDistribution {
    domain::AmiDistribution {
        name: a.name,
        description: a.description,
        target_account_ids: a.target_account_ids,
        ami_tags: a.ami_tags,
        kms_key_id: a.kms_key_id,
        launch_permission: a.launch_permission.map(|p| domain::LaunchPermission {
            user_ids: p.user_ids,
            user_groups: p.user_groups,
            organization_arns: p.organization_arns,
            organizational_unit_arns: p.organizational_unit_arns,
        }),
    }
}

fn container_from_wire(
    c: ContainerDistributionConfiguration,
    at: &str,
) -> Result<domain::ContainerDistribution, ApiError> {
    let at = format!("{at}.targetRepository");
    let repository = required(c.target_repository, &at)?;
    let service = match required(repository.service, &format!("{at}.service"))? {
        ContainerRepositoryService::Ecr => domain::RepositoryService::Ecr,
    };
    Ok(domain::ContainerDistribution {
        description: c.description,
        container_tags: c.container_tags,
        target_repository: domain::TargetRepository {
            service,
            repository_name: required(repository.repository_name, &format!("{at}.repositoryName"))?,
        },
    })
}

fn launch_template_from_wire(
    t: LaunchTemplateConfiguration,
    at: &str,
) -> Result<domain::LaunchTemplate, ApiError> {
    Ok(domain::LaunchTemplate {
        launch_template_id: required(t.launch_template_id, &format!("{at}.launchTemplateId"))?,
        account_id: t.account_id,
        set_default_version: t.set_default_version,
    })
}

fn s3_export_from_wire(s: S3ExportConfiguration, at: &str) -> Result<domain::S3Export, ApiError> {
    let format = match required(s.disk_image_format, &format!("{at}.diskImageFormat"))? {
        DiskImageFormat::Vmdk => domain::DiskImageFormat::Vmdk,
        DiskImageFormat::Raw => domain::DiskImageFormat::Raw,
        DiskImageFormat::Vhd => domain::DiskImageFormat::Vhd,
    };
    Ok(domain::S3Export {
        role_name: required(s.role_name, &format!("{at}.roleName"))?,
        disk_image_format: format,
        s3_bucket: required(s.s3_bucket, &format!("{at}.s3Bucket"))?,
        s3_prefix: s.s3_prefix,
    })
}

fn fast_launch_from_wire(
    f: FastLaunchConfiguration,
    at: &str,
) -> Result<domain::FastLaunch, ApiError> {
    Ok(domain::FastLaunch {
        enabled: required(f.enabled, &format!("{at}.enabled"))?,
        snapshot_configuration: f
            .snapshot_configuration
            .map(|s| domain::FastLaunchSnapshots {
                target_resource_count: s.target_resource_count,
            }),
        max_parallel_launches: f.max_parallel_launches,
        launch_template: f.launch_template.map(|t| domain::FastLaunchTemplate {
            launch_template_id: t.launch_template_id,
            launch_template_name: t.launch_template_name,
            launch_template_version: t.launch_template_version,
        }),
        account_id: f.account_id,
    })
}

fn ssm_parameter_from_wire(
    p: SsmParameterConfiguration,
    at: &str,
) -> Result<domain::SsmParameter, ApiError> {
    Ok(domain::SsmParameter {
        ami_account_id: p.ami_account_id,
        parameter_name: required(p.parameter_name, &format!("{at}.parameterName"))?,
        data_type: p.data_type.map(|t| match t {
            SsmParameterDataType::Text => domain::SsmDataType::Text,
            SsmParameterDataType::AwsEc2Image => domain::SsmDataType::AwsEc2Image,
        }),
    })
}

fn distribution_to_wire(d: &domain::Distribution) -> Distribution {
    Distribution {
        region: Some(d.region.clone()),
        ami_distribution_configuration: d.ami_distribution_configuration.as_ref().map(ami_to_wire),
        container_distribution_configuration: d
            .container_distribution_configuration
            .as_ref()
            .map(container_to_wire),
        license_configuration_arns: d.license_configuration_arns.clone(),
        launch_template_configurations: d.launch_template_configurations.as_ref().map(|list| {
            list.iter()
                .map(|t| LaunchTemplateConfiguration {
                    launch_template_id: Some(t.launch_template_id.clone()),
                    account_id: t.account_id.clone(),
                    set_default_version: t.set_default_version,
                })
                .collect()
        }),
        s3_export_configuration: d.s3_export_configuration.as_ref().map(s3_export_to_wire),
        fast_launch_configurations: d
            .fast_launch_configurations
            .as_ref()
            .map(|list| list.iter().map(fast_launch_to_wire).collect()),
        ssm_parameter_configurations: d
            .ssm_parameter_configurations
            .as_ref()
            .map(|list| list.iter().map(ssm_parameter_to_wire).collect()),
    }
}

fn ami_to_wire(a: &domain::AmiDistribution) -> AmiDistributionConfiguration {
    AmiDistributionConfiguration {
        name: a.name.clone(),
        description: a.description.clone(),
        target_account_ids: a.target_account_ids.clone(),
        ami_tags: a.ami_tags.clone(),
        kms_key_id: a.kms_key_id.clone(),
        launch_permission: a
            .launch_permission
            .as_ref()
            .map(|p| LaunchPermissionConfiguration {
                user_ids: p.user_ids.clone(),
                user_groups: p.user_groups.clone(),
                organization_arns: p.organization_arns.clone(),
                organizational_unit_arns: p.organizational_unit_arns.clone(),
            }),
    }
}

fn container_to_wire(c: &domain::ContainerDistribution) -> ContainerDistributionConfiguration {
    let service = match c.target_repository.service {
        domain::RepositoryService::Ecr => ContainerRepositoryService::Ecr,
    };
    ContainerDistributionConfiguration {
        description: c.description.clone(),
        container_tags: c.container_tags.clone(),
        target_repository: Some(TargetContainerRepository {
            service: Some(service),
            repository_name: Some(c.target_repository.repository_name.clone()),
        }),
    }
}

fn s3_export_to_wire(s: &domain::S3Export) -> S3ExportConfiguration {
    let format = match s.disk_image_format {
        domain::DiskImageFormat::Vmdk => DiskImageFormat::Vmdk,
        domain::DiskImageFormat::Raw => DiskImageFormat::Raw,
        domain::DiskImageFormat::Vhd => DiskImageFormat::Vhd,
    };
    S3ExportConfiguration {
        role_name: Some(s.role_name.clone()),
        disk_image_format: Some(format),
        s3_bucket: Some(s.s3_bucket.clone()),
        s3_prefix: s.s3_prefix.clone(),
    }
}

fn fast_launch_to_wire(f: &domain::FastLaunch) -> FastLaunchConfiguration {
    FastLaunchConfiguration {
        enabled: Some(f.enabled),
        snapshot_configuration: f.snapshot_configuration.as_ref().map(|s| {
            FastLaunchSnapshotConfiguration {
                target_resource_count: s.target_resource_count,
            }
        }),
        max_parallel_launches: f.max_parallel_launches,
        launch_template: f.launch_template.as_ref().map(|t| {
            FastLaunchLaunchTemplateSpecification {
                launch_template_id: t.launch_template_id.clone(),
                launch_template_name: t.launch_template_name.clone(),
                launch_template_version: t.launch_template_version.clone(),
            }
        }),
        account_id: f.account_id.clone(),
    }
}

fn ssm_parameter_to_wire(p: &domain::SsmParameter) -> SsmParameterConfiguration {
    SsmParameterConfiguration {
        ami_account_id: p.ami_account_id.clone(),
        parameter_name: Some(p.parameter_name.clone()),
        data_type: p.data_type.map(|t| match t {
            domain::SsmDataType::Text => SsmParameterDataType::Text,
            domain::SsmDataType::AwsEc2Image => SsmParameterDataType::AwsEc2Image,
        }),
    }
}

pub(crate) fn to_wire(
    tx: &mut dyn Txn,
    dist: &DistConfig,
) -> Result<DistributionConfiguration, ApiError> {
    let arn = dist.arn.to_string();
    Ok(DistributionConfiguration {
        arn: Some(arn.clone()),
        name: Some(dist.name.clone()),
        description: dist.description.clone(),
        distributions: Some(
            dist.distributions
                .iter()
                .map(distribution_to_wire)
                .collect(),
        ),
        timeout_minutes: Some(domain::TIMEOUT_MINUTES),
        date_created: Some(date(dist.date_created)),
        date_updated: dist.date_updated.map(date),
        tags: response_tags(tx, &arn)?,
    })
}

pub fn create(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: CreateDistributionConfigurationRequest,
) -> Result<CreateDistributionConfigurationResponse, ApiError> {
    let name = required(input.name, "name")?;
    check_name_free(tx, ctx, KIND, &name)?;
    let distributions = distributions_from_wire(ctx, input.distributions)?;
    check_dry_run(input.dry_run, "CreateDistributionConfiguration")?;
    let arn = new_arn(ctx, KIND, &name);
    let dist = DistConfig {
        arn: arn.clone(),
        name,
        description: input.description,
        distributions,
        date_created: ctx.now_millis,
        date_updated: None,
    };
    tx.put_tagged(&dist, input.tags.as_ref()).api()?;
    Ok(CreateDistributionConfigurationResponse {
        request_id: None,
        client_token: input.client_token,
        distribution_configuration_arn: Some(arn.to_string()),
    })
}

pub fn get(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: GetDistributionConfigurationRequest,
) -> Result<GetDistributionConfigurationResponse, ApiError> {
    let arn = required(input.distribution_configuration_arn, ARN_FIELD)?;
    let dist: DistConfig = get_exact(tx, ctx, KIND, &arn, ARN_FIELD)?;
    Ok(GetDistributionConfigurationResponse {
        request_id: None,
        distribution_configuration: Some(to_wire(tx, &dist)?),
    })
}

pub fn list(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: ListDistributionConfigurationsRequest,
) -> Result<ListDistributionConfigurationsResponse, ApiError> {
    const OP: &str = "ListDistributionConfigurations";
    let filters = Filters::parse(input.filters.as_ref(), &["name"])?;
    let after = svc.pager.decode(OP, ctx, input.next_token.as_deref())?;
    let all: Vec<DistConfig> = list_own(tx, ctx, KIND, None, after)?;
    let matching = all
        .into_iter()
        .filter(|d| filters.accept(|_| Some(d.name.clone())));
    let page = svc
        .pager
        .page(OP, ctx, matching, input.max_results, |d| d.arn.to_string());
    let mut summaries = Vec::with_capacity(page.items.len());
    for dist in &page.items {
        let arn = dist.arn.to_string();
        summaries.push(DistributionConfigurationSummary {
            arn: Some(arn.clone()),
            name: Some(dist.name.clone()),
            description: dist.description.clone(),
            date_created: Some(date(dist.date_created)),
            date_updated: dist.date_updated.map(date),
            regions: Some(dist.regions()),
            tags: response_tags(tx, &arn)?,
        });
    }
    Ok(ListDistributionConfigurationsResponse {
        request_id: None,
        distribution_configuration_summary_list: Some(summaries),
        next_token: page.next_token,
    })
}

pub fn update(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: UpdateDistributionConfigurationRequest,
) -> Result<UpdateDistributionConfigurationResponse, ApiError> {
    let arn = required(input.distribution_configuration_arn, ARN_FIELD)?;
    let mut dist: DistConfig = get_exact(tx, ctx, KIND, &arn, ARN_FIELD)?;
    dist.distributions = distributions_from_wire(ctx, input.distributions)?;
    // No selective update: an omitted description is removed, as the API documents.
    dist.description = input.description;
    dist.date_updated = Some(ctx.now_millis);
    tx.put(&dist).api()?;
    Ok(UpdateDistributionConfigurationResponse {
        request_id: None,
        // AWS answers an update with its ARN only, not the client token (the aws CLI examples).
        client_token: None,
        distribution_configuration_arn: Some(arn),
    })
}

pub fn delete(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: DeleteDistributionConfigurationRequest,
) -> Result<DeleteDistributionConfigurationResponse, ApiError> {
    let arn = required(input.distribution_configuration_arn, ARN_FIELD)?;
    let _: DistConfig = get_exact(tx, ctx, KIND, &arn, ARN_FIELD)?;
    check_no_referrers(tx, &arn, KIND.label())?;
    tx.delete_row(&arn).api()?;
    Ok(DeleteDistributionConfigurationResponse {
        request_id: None,
        distribution_configuration_arn: Some(arn),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_wire::Operation;
    use serde_json::{json, Value};

    struct Fixture {
        svc: Service,
        dir: std::path::PathBuf,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn fixture() -> Fixture {
        let dir = std::env::temp_dir().join(format!("kiln-dist-test-{}", uuid::Uuid::new_v4()));
        let svc = Service::open(&dir, kiln_store::sqlite::Sync::Normal).unwrap();
        Fixture { svc, dir }
    }

    fn ctx() -> RequestContext {
        RequestContext {
            request_id: "req".into(),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            now_millis: 1_700_000_000_000,
            valid_until: Default::default(),
            ..Default::default()
        }
    }

    fn call(f: &Fixture, op: Operation, input: Value) -> Result<Value, ApiError> {
        f.svc
            .call(op, &ctx(), input)
            .map(|s| serde_json::from_str(&s).expect("responses are JSON"))
    }

    fn every_member() -> Value {
        json!([
            {"region": "us-west-2",
             "amiDistributionConfiguration": {
                "name": "web {{imagebuilder:buildDate}}", "description": "web servers",
                "targetAccountIds": ["111122223333"], "amiTags": {"team": "web"},
                "kmsKeyId": "arn:aws:kms:us-west-2:123456789012:key/k",
                "launchPermission": {"userIds": ["444455556666"], "userGroups": ["all"]}},
             "licenseConfigurationArns": ["arn:aws:license-manager:us-west-2:123456789012:license-configuration:lic-0123456789abcdef0123456789abcdef"],
             "launchTemplateConfigurations": [{"launchTemplateId": "lt-0123456789abcdef0", "accountId": "111122223333", "setDefaultVersion": false}],
             "s3ExportConfiguration": {"roleName": "vmimport", "diskImageFormat": "VHD", "s3Bucket": "b", "s3Prefix": "p/"},
             "fastLaunchConfigurations": [{"enabled": true, "maxParallelLaunches": 6,
                "snapshotConfiguration": {"targetResourceCount": 5},
                "launchTemplate": {"launchTemplateName": "fast", "launchTemplateVersion": "2"},
                "accountId": "123456789012"}],
             "ssmParameterConfigurations": [{"parameterName": "/ib/ami", "dataType": "aws:ec2:image", "amiAccountId": "111122223333"}]},
            {"region": "us-east-1",
             "containerDistributionConfiguration": {"description": "east", "containerTags": ["east1"],
                "targetRepository": {"service": "ECR", "repositoryName": "team-a/my-repo"}}}
        ])
    }

    fn create(f: &Fixture, name: &str, distributions: Value) -> Result<String, ApiError> {
        let out = call(
            f,
            Operation::CreateDistributionConfiguration,
            json!({"name": name, "distributions": distributions, "clientToken": format!("t-{name}")}),
        )?;
        Ok(out["distributionConfigurationArn"]
            .as_str()
            .unwrap()
            .to_string())
    }

    fn get(f: &Fixture, arn: &str) -> Result<Value, ApiError> {
        let out = call(
            f,
            Operation::GetDistributionConfiguration,
            json!({"distributionConfigurationArn": arn}),
        )?;
        Ok(out["distributionConfiguration"].clone())
    }

    #[test]
    fn every_member_reads_back_as_written() {
        let f = fixture();
        let arn = create(&f, "My Dist", every_member()).unwrap();
        assert_eq!(
            arn,
            "arn:aws:imagebuilder:us-east-1:123456789012:distribution-configuration/my-dist"
        );
        let got = get(&f, &arn).unwrap();
        assert_eq!(got["distributions"], every_member());
        assert_eq!(got["name"], "My Dist");
        assert_eq!(got["timeoutMinutes"], 720);
        assert!(got.get("dateUpdated").is_none());
    }

    #[test]
    fn rule_violations_name_the_member() {
        let f = fixture();
        let ami = |region: &str| json!({"region": region, "amiDistributionConfiguration": {}});
        let e = create(&f, "dist", json!([ami("us-east-1"), ami("us-east-1")])).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParameterCombinationException);
        assert!(
            e.message.starts_with("distributions[1].region:"),
            "{}",
            e.message
        );
        let e = create(&f, "dist", json!([ami("mars")])).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequestException);
        assert!(
            e.message.starts_with("distributions[0].region:"),
            "{}",
            e.message
        );
        let e = create(&f, "dist", json!([{"region": "us-east-1"}])).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequestException);
        assert!(e.message.starts_with("distributions[0]:"), "{}", e.message);
        let e = create(&f, "dist", json!([])).unwrap_err();
        assert!(e.message.starts_with("distributions:"), "{}", e.message);
    }

    #[test]
    fn names_are_unique_and_dry_runs_write_nothing() {
        let f = fixture();
        let dists = json!([{"region": "us-east-1", "amiDistributionConfiguration": {}}]);
        let e = call(
            &f,
            Operation::CreateDistributionConfiguration,
            json!({"name": "dist", "distributions": dists, "clientToken": "dry", "dryRun": true}),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::DryRunOperationException);
        create(&f, "dist", dists.clone()).unwrap();
        let e = create(&f, "DIST", dists).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ResourceAlreadyExistsException);
    }

    #[test]
    fn update_replaces_everything_and_delete_respects_pipelines() {
        let f = fixture();
        let arn = create(&f, "dist", every_member()).unwrap();
        let replacement = json!([{"region": "eu-west-1", "amiDistributionConfiguration": {"name": "x {{imagebuilder:buildDate}}"}}]);
        call(
            &f,
            Operation::UpdateDistributionConfiguration,
            json!({"distributionConfigurationArn": arn, "distributions": replacement, "clientToken": "u"}),
        )
        .unwrap();
        let got = get(&f, &arn).unwrap();
        assert_eq!(got["distributions"], replacement);
        assert!(got.get("description").is_none());
        assert!(got.get("dateUpdated").is_some());

        let pipeline = "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/p";
        f.svc
            .store
            .write(|tx| tx.set_references(pipeline, std::slice::from_ref(&arn)))
            .unwrap()
            .unwrap();
        let delete = json!({"distributionConfigurationArn": arn});
        let e = call(
            &f,
            Operation::DeleteDistributionConfiguration,
            delete.clone(),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ResourceDependencyException);
        f.svc
            .store
            .write(|tx| tx.set_references(pipeline, &[]))
            .unwrap()
            .unwrap();
        call(&f, Operation::DeleteDistributionConfiguration, delete).unwrap();
        assert_eq!(
            get(&f, &arn).unwrap_err().kind,
            ErrorKind::ResourceNotFoundException
        );
    }

    #[test]
    fn list_filters_by_name_and_pages() {
        let f = fixture();
        for name in ["web-a", "web-b", "dbs"] {
            create(&f, name, every_member()).unwrap();
        }
        let list =
            |input: Value| call(&f, Operation::ListDistributionConfigurations, input).unwrap();
        let first =
            list(json!({"filters": [{"name": "name", "values": ["web*"]}], "maxResults": 1}));
        let items = first["distributionConfigurationSummaryList"]
            .as_array()
            .unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["name"], "web-a");
        assert_eq!(items[0]["regions"], json!(["us-west-2", "us-east-1"]));
        let token = first["nextToken"].as_str().unwrap();
        let second = list(
            json!({"filters": [{"name": "name", "values": ["web*"]}], "maxResults": 1, "nextToken": token}),
        );
        assert_eq!(
            second["distributionConfigurationSummaryList"][0]["name"],
            "web-b"
        );
        assert!(second.get("nextToken").is_none());
        let e = call(
            &f,
            Operation::ListDistributionConfigurations,
            json!({"filters": [{"name": "region", "values": ["us-east-1"]}]}),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequestException);
    }
}
