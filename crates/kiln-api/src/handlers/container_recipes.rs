//! Container recipes: Create, Get, List, Delete.
//!
//! They version, resolve components and refuse deletion while in use exactly like image recipes
//! (the shared parts live in [`super::image_recipes`]). What differs is the build: a Dockerfile
//! template instead of an AMI's settings, a target ECR repository, and the instance that builds
//! and tests the container.
//!
//! The template is given inline (`dockerfileTemplateData`) or read once from S3
//! (`dockerfileTemplateUri`, through `crate::documents`, before the transaction). It must use
//! `{{{ imagebuilder:parentImage }}}`, and `{{{ imagebuilder:environments }}}` when the recipe
//! has components; it is parsed and checked as the build will run it (`kiln_dockerfile`): no
//! build context, stages built from the parent, an earlier stage or `scratch`. The platform is
//! `platformOverride` or Linux.

use super::image_recipes::{
    block_devices_from_wire, block_devices_to_wire, components_from_wire, components_to_wire,
    delete_recipe, get_recipe, latest_version_references, new_version_arn, platform_from_wire,
    platform_to_wire, resolve_components, store_recipe,
};
use crate::convert::{check_dry_run, date, domain_error, response_tags};
use crate::filters::Filters;
use crate::service::Service;
use kiln_domain::arn::ResourceKind;
use kiln_domain::resources::recipe::{self as domain, ContainerRecipe as Recipe, ParentImage};
use kiln_store::Txn;
use kiln_wire::types::*;
use kiln_wire::{ApiError, RequestContext};

const KIND: ResourceKind = ResourceKind::ContainerRecipe;

/// The template: inline, or the text read from `dockerfileTemplateUri` before the transaction
/// (see `crate::documents`); exactly one of them. Answers the text and the member it came from.
fn dockerfile_template(
    ctx: &RequestContext,
    data: Option<String>,
    uri: Option<String>,
) -> Result<(String, String), ApiError> {
    match (data, uri) {
        (Some(data), None) => Ok((data, "dockerfileTemplateData".to_string())),
        (Some(_), Some(_)) => Err(ApiError::invalid_request(
            "dockerfileTemplateData, dockerfileTemplateUri: give exactly one of them, not both",
        )),
        (None, Some(uri)) => match &ctx.fetched_document {
            Some(doc) if doc.uri == uri => {
                Ok((doc.text.clone(), format!("dockerfileTemplateUri {uri}")))
            }
            // Only a request whose clientToken was answered a moment ago gets here (it was not
            // read again), and the token has expired since.
            _ => Err(ApiError::new(
                kiln_wire::ErrorKind::ServiceUnavailableException,
                format!("dockerfileTemplateUri {uri}: the template was not read; retry the request"),
            )),
        },
        (None, None) => Err(ApiError::invalid_request(
            "dockerfileTemplateData: required (give the Dockerfile template inline, or its S3 location in dockerfileTemplateUri)",
        )),
    }
}

/// The template as the build will read it: Image Builder's variables expanded, the Dockerfile
/// parsed, and everything a container build cannot do refused now rather than at build time.
fn check_template(template: &str, field: &str, parent_image: &str) -> Result<(), ApiError> {
    let invalid = |e: kiln_dockerfile::Error| {
        ApiError::invalid_request(format!("{field}: the Dockerfile, line {e}"))
    };
    let dockerfile =
        kiln_dockerfile::template::expand_template(template, parent_image).map_err(invalid)?;
    kiln_dockerfile::validate::validate(&dockerfile).map_err(invalid)?;
    kiln_dockerfile::bases::bases(&dockerfile, parent_image).map_err(invalid)?;
    Ok(())
}

/// "Use this property only when the base image is a container image from a registry. When the
/// base image is an Image Builder image, the operating system version comes from the parent
/// image."
fn check_os_version_override(
    image_os_version_override: Option<&str>,
    parent: &ParentImage,
) -> Result<(), ApiError> {
    if image_os_version_override.is_some() && matches!(parent, ParentImage::ImageBuilderImage(_)) {
        return Err(ApiError::invalid_request(
            "imageOsVersionOverride: not allowed when parentImage is an Image Builder image: the operating system version comes from that image",
        ));
    }
    Ok(())
}

fn instance_from_wire(config: Option<InstanceConfiguration>) -> Option<domain::ContainerInstance> {
    config.map(|c| domain::ContainerInstance {
        image: c.image,
        block_device_mappings: block_devices_from_wire(c.block_device_mappings),
    })
}

pub(crate) fn to_wire(tx: &mut dyn Txn, recipe: &Recipe) -> Result<ContainerRecipe, ApiError> {
    let arn = recipe.arn.to_string();
    Ok(ContainerRecipe {
        arn: Some(arn.clone()),
        container_type: ContainerType::from_wire(&recipe.container_type),
        name: Some(recipe.name.clone()),
        description: recipe.description.clone(),
        platform: Some(platform_to_wire(recipe.platform)),
        owner: Some(recipe.arn.account.clone()),
        version: Some(recipe.version.to_string()),
        components: components_to_wire(&recipe.components),
        instance_configuration: recipe.instance_configuration.as_ref().map(|i| {
            InstanceConfiguration {
                image: i.image.clone(),
                block_device_mappings: block_devices_to_wire(&i.block_device_mappings),
            }
        }),
        dockerfile_template_data: Some(recipe.dockerfile_template_data.clone()),
        kms_key_id: recipe.kms_key_id.clone(),
        // "Image Builder encrypts all Dockerfile template data at rest, so this value is
        // always true."
        encrypted: Some(true),
        parent_image: Some(recipe.parent_image.clone()),
        date_created: Some(date(recipe.date_created)),
        tags: response_tags(tx, &arn)?,
        working_directory: recipe.working_directory.clone(),
        target_repository: Some(TargetContainerRepository {
            service: ContainerRepositoryService::from_wire(&recipe.target_repository.service),
            repository_name: Some(recipe.target_repository.repository_name.clone()),
        }),
    })
}

pub fn create(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: CreateContainerRecipeRequest,
) -> Result<CreateContainerRecipeResponse, ApiError> {
    let name = input.name.unwrap_or_default();
    let parent_image = input.parent_image.unwrap_or_default();
    let components = components_from_wire(input.components);
    let instance_configuration = instance_from_wire(input.instance_configuration);
    let (template, field) = dockerfile_template(
        ctx,
        input.dockerfile_template_data,
        input.dockerfile_template_uri,
    )?;

    kiln_dockerfile::template::check_variables(&template, !components.is_empty())
        .map_err(|m| ApiError::invalid_request(format!("{field}: {m}")))?;
    check_template(&template, &field, &parent_image)?;
    let parent = ParentImage::classify(&parent_image).map_err(domain_error)?;
    svc.parents
        .check_at_create_in(tx, &ctx.account_id, &ctx.region, &parent_image)
        .map_err(crate::convert::parent_error)?;
    check_os_version_override(input.image_os_version_override.as_deref(), &parent)?;
    if let Some(instance) = &instance_configuration {
        domain::check_block_device_mappings(
            "instanceConfiguration.blockDeviceMappings",
            &instance.block_device_mappings,
        )
        .map_err(domain_error)?;
    }
    let (arn, version) = new_version_arn(
        tx,
        ctx,
        KIND,
        &name,
        input.semantic_version.as_deref().unwrap_or_default(),
    )?;
    let resolved = resolve_components(tx, ctx, &components)?;
    let platform = domain::container_recipe_platform(
        input.platform_override.map(platform_from_wire),
        &parent,
        &resolved.platforms,
    )
    .map_err(domain_error)?;
    let target = input.target_repository.unwrap_or_default();
    // Images are pushed there (`--ecr-registry`): a name no registry takes is refused now.
    kiln_domain::resources::distribution::check_repository_name(
        target.repository_name.as_deref().unwrap_or_default(),
        "targetRepository.repositoryName",
    )
    .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    check_dry_run(input.dry_run, "CreateContainerRecipe")?;

    let recipe = Recipe {
        arn: arn.clone(),
        name,
        version,
        description: input.description,
        container_type: input
            .container_type
            .unwrap_or(ContainerType::Docker)
            .as_str()
            .to_string(),
        platform,
        parent_image,
        components,
        dockerfile_template_data: template,
        instance_configuration,
        image_os_version_override: input.image_os_version_override,
        target_repository: domain::TargetRepository {
            service: target
                .service
                .unwrap_or(ContainerRepositoryService::Ecr)
                .as_str()
                .to_string(),
            repository_name: target.repository_name.unwrap_or_default(),
        },
        kms_key_id: input.kms_key_id,
        working_directory: input.working_directory,
        date_created: ctx.now_millis,
    };
    store_recipe(tx, &recipe, &resolved.build_arns, input.tags.as_ref())?;
    Ok(CreateContainerRecipeResponse {
        request_id: None,
        client_token: input.client_token,
        container_recipe_arn: Some(arn.to_string()),
        latest_version_references: Some(latest_version_references(&arn, &version)),
    })
}

pub fn get(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: GetContainerRecipeRequest,
) -> Result<GetContainerRecipeResponse, ApiError> {
    let arn = input.container_recipe_arn.unwrap_or_default();
    let recipe: Recipe = get_recipe(tx, ctx, KIND, &arn, "containerRecipeArn")?;
    let mut wire = to_wire(tx, &recipe)?;
    super::sharing::hide_foreign_tags(ctx, wire.arn.as_deref(), &mut wire.tags);
    Ok(GetContainerRecipeResponse {
        request_id: None,
        latest_version_references: Some(latest_version_references(&recipe.arn, &recipe.version)),
        container_recipe: Some(wire),
    })
}

const LIST_FILTERS: &[&str] = &["containerType", "name", "parentImage", "platform"];

/// A recipe's value for a ListContainerRecipes filter. The name filter matches the name as
/// written or its normalised ARN form.
fn filter_value(recipe: &Recipe, filter: &str) -> Option<String> {
    match filter {
        "name" => Some(recipe.name.clone()),
        "containerType" => Some(recipe.container_type.clone()),
        "parentImage" => Some(recipe.parent_image.clone()),
        "platform" => Some(recipe.platform.as_str().to_string()),
        _ => None,
    }
}

pub fn list(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: ListContainerRecipesRequest,
) -> Result<ListContainerRecipesResponse, ApiError> {
    const OP: &str = "ListContainerRecipes";
    let filters = Filters::parse(input.filters.as_ref(), LIST_FILTERS)?;
    let after = svc.pager.decode(OP, ctx, input.next_token.as_deref())?;
    let all: Vec<Recipe> = super::sharing::listed(tx, ctx, KIND, input.owner.as_ref(), after)?;
    let matching = all
        .into_iter()
        .filter(|r| filters.accept(|f| filter_value(r, f)));
    let page = svc
        .pager
        .page(OP, ctx, matching, input.max_results, |r| r.arn.to_string());
    let mut summaries = Vec::with_capacity(page.items.len());
    for recipe in &page.items {
        let arn = recipe.arn.to_string();
        summaries.push(ContainerRecipeSummary {
            arn: Some(arn.clone()),
            container_type: ContainerType::from_wire(&recipe.container_type),
            name: Some(recipe.name.clone()),
            platform: Some(platform_to_wire(recipe.platform)),
            owner: Some(recipe.arn.account.clone()),
            parent_image: Some(recipe.parent_image.clone()),
            date_created: Some(date(recipe.date_created)),
            instance_image: recipe
                .instance_configuration
                .as_ref()
                .and_then(|i| i.image.clone()),
            tags: super::sharing::visible_tags(tx, ctx, &arn)?,
        });
    }
    Ok(ListContainerRecipesResponse {
        request_id: None,
        container_recipe_summary_list: Some(summaries),
        next_token: page.next_token,
    })
}

pub fn delete(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: DeleteContainerRecipeRequest,
) -> Result<DeleteContainerRecipeResponse, ApiError> {
    let arn = input.container_recipe_arn.unwrap_or_default();
    let deleted = delete_recipe(tx, ctx, KIND, &arn, "containerRecipeArn")?;
    Ok(DeleteContainerRecipeResponse {
        request_id: None,
        container_recipe_arn: Some(deleted),
    })
}

#[cfg(test)]
mod tests {
    use crate::handlers::image_recipes::tests::{expect_error, Fixture, ACCOUNT, PREFIX};
    use kiln_wire::{ApiError, ErrorKind, Operation};
    use serde_json::{json, Value};

    const TEMPLATE: &str = "FROM {{{ imagebuilder:parentImage }}}\n{{{ imagebuilder:environments }}}\n{{{ imagebuilder:components }}}";

    fn create(f: &Fixture, name: &str, version: &str, extra: Value) -> Result<Value, ApiError> {
        let mut input = json!({
            "containerType": "DOCKER",
            "name": name,
            "semanticVersion": version,
            "parentImage": "amazonlinux:latest",
            "dockerfileTemplateData": TEMPLATE,
            "targetRepository": {"service": "ECR", "repositoryName": "team-a/app"},
            "clientToken": uuid::Uuid::new_v4().to_string(),
        });
        if let (Value::Object(base), Value::Object(extra)) = (&mut input, extra) {
            base.extend(extra);
        }
        f.call(Operation::CreateContainerRecipe, input)
    }

    fn get(f: &Fixture, arn: &str) -> Result<Value, ApiError> {
        f.call(
            Operation::GetContainerRecipe,
            json!({ "containerRecipeArn": arn }),
        )
    }

    #[test]
    fn create_and_get_round_trip() {
        let f = Fixture::new();
        let component = f.put_component("setup", "1.0.0", 1, json!({"platform": "Linux"}));
        let extra = json!({
            "description": "app image",
            "components": [{"componentArn": component}],
            "instanceConfiguration": {"image": "ami-0123456789abcdef0",
                "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"volumeSize": 50}}]},
            "workingDirectory": "/work",
            "kmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/k",
            "tags": {"env": "test"},
        });
        let created = create(&f, "App Image", "2.1.x", extra.clone()).unwrap();
        let arn = format!("{PREFIX}:container-recipe/app-image/2.1.0");
        assert_eq!(created["containerRecipeArn"], arn);
        assert_eq!(
            created["latestVersionReferences"]["latestMinorVersionArn"],
            format!("{PREFIX}:container-recipe/app-image/2.1.x")
        );
        let got = get(&f, &format!("{PREFIX}:container-recipe/app-image/x.x.x")).unwrap();
        let recipe = &got["containerRecipe"];
        for member in [
            "description",
            "components",
            "instanceConfiguration",
            "workingDirectory",
            "kmsKeyId",
            "tags",
        ] {
            assert_eq!(recipe[member], extra[member], "{member}");
        }
        assert_eq!(recipe["arn"], arn);
        assert_eq!(recipe["containerType"], "DOCKER");
        assert_eq!(recipe["platform"], "Linux");
        assert_eq!(recipe["owner"], ACCOUNT);
        assert_eq!(recipe["encrypted"], true);
        assert_eq!(recipe["dockerfileTemplateData"], TEMPLATE);
        assert_eq!(
            recipe["targetRepository"],
            json!({"service": "ECR", "repositoryName": "team-a/app"})
        );
        assert_eq!(f.referrers(&component), vec![arn.clone()]);
        expect_error(
            create(&f, "app_image", "2.1.0", json!({})),
            ErrorKind::ResourceAlreadyExistsException,
            &[&arn],
        );
    }

    #[test]
    fn the_template_is_inline_and_uses_the_variables() {
        let f = Fixture::new();
        expect_error(
            create(
                &f,
                "app",
                "1.0.0",
                json!({"dockerfileTemplateData": "FROM amazonlinux:2"}),
            ),
            ErrorKind::InvalidRequestException,
            &["dockerfileTemplateData", "imagebuilder:parentImage"],
        );
        let component = f.put_component("setup", "1.0.0", 1, json!({}));
        expect_error(
            create(
                &f,
                "app",
                "1.0.0",
                json!({"dockerfileTemplateData": "FROM {{{ imagebuilder:parentImage }}}",
                       "components": [{"componentArn": component}]}),
            ),
            ErrorKind::InvalidRequestException,
            &["imagebuilder:environments"],
        );
        expect_error(
            create(
                &f,
                "app",
                "1.0.0",
                json!({"dockerfileTemplateUri": "s3://bucket/Dockerfile"}),
            ),
            ErrorKind::InvalidRequestException,
            &["dockerfileTemplateData, dockerfileTemplateUri", "not both"],
        );
        let mut no_data = json!({
            "containerType": "DOCKER", "name": "app", "semanticVersion": "1.0.0",
            "parentImage": "amazonlinux:latest", "clientToken": "t1",
            "targetRepository": {"service": "ECR", "repositoryName": "r"},
            "dockerfileTemplateUri": "s3://bucket/Dockerfile",
        });
        expect_error(
            f.call(Operation::CreateContainerRecipe, no_data.clone()),
            ErrorKind::InvalidRequestException,
            &[
                "dockerfileTemplateUri s3://bucket/Dockerfile",
                "no S3 endpoint configured",
            ],
        );
        no_data
            .as_object_mut()
            .unwrap()
            .remove("dockerfileTemplateUri");
        expect_error(
            f.call(Operation::CreateContainerRecipe, no_data),
            ErrorKind::InvalidRequestException,
            &["dockerfileTemplateData"],
        );
    }

    #[test]
    fn platform_override_rules() {
        let f = Fixture::new();
        let created = create(
            &f,
            "win-app",
            "1.0.0",
            json!({"platformOverride": "Windows"}),
        )
        .unwrap();
        let got = get(&f, created["containerRecipeArn"].as_str().unwrap()).unwrap();
        assert_eq!(got["containerRecipe"]["platform"], "Windows");
        expect_error(
            create(&f, "mac-app", "1.0.0", json!({"platformOverride": "macOS"})),
            ErrorKind::InvalidRequestException,
            &["platformOverride", "Linux and Windows"],
        );
        let image_parent = format!("{PREFIX}:image/base/1.0.0/1");
        expect_error(
            create(
                &f,
                "child",
                "1.0.0",
                json!({"parentImage": image_parent, "platformOverride": "Linux"}),
            ),
            ErrorKind::InvalidRequestException,
            &["platformOverride"],
        );
        expect_error(
            create(
                &f,
                "child",
                "1.0.0",
                json!({"parentImage": image_parent, "imageOsVersionOverride": "Amazon Linux 2"}),
            ),
            ErrorKind::InvalidRequestException,
            &["imageOsVersionOverride"],
        );
        let win = f.put_component("win", "1.0.0", 1, json!({"platform": "Windows"}));
        expect_error(
            create(
                &f,
                "linux-app",
                "1.0.0",
                json!({"components": [{"componentArn": win}]}),
            ),
            ErrorKind::InvalidRequestException,
            &["components[0].componentArn", "Windows"],
        );
        expect_error(
            create(&f, "linux-app", "1.0.0", json!({"dryRun": true})),
            ErrorKind::DryRunOperationException,
            &[],
        );
    }

    #[test]
    fn list_and_delete() {
        let f = Fixture::new();
        create(
            &f,
            "alpha",
            "1.0.0",
            json!({"instanceConfiguration": {"image": "ami-1"}}),
        )
        .unwrap();
        create(&f, "beta", "1.0.0", json!({"parentImage": "ubuntu:22.04"})).unwrap();
        let list = |input: Value| f.call(Operation::ListContainerRecipes, input).unwrap();
        let all = list(json!({}));
        let summaries = all["containerRecipeSummaryList"].as_array().unwrap();
        assert_eq!(summaries.len(), 2);
        assert_eq!(summaries[0]["instanceImage"], "ami-1");
        assert_eq!(summaries[0]["containerType"], "DOCKER");
        let filtered = list(json!({"filters": [
            {"name": "parentImage", "values": ["ubuntu:22.04"]},
            {"name": "containerType", "values": ["DOCKER"]},
            {"name": "platform", "values": ["Linux"]}]}));
        assert_eq!(
            filtered["containerRecipeSummaryList"][0]["arn"],
            format!("{PREFIX}:container-recipe/beta/1.0.0")
        );
        assert_eq!(
            filtered["containerRecipeSummaryList"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            list(json!({"owner": "Shared"}))["containerRecipeSummaryList"],
            json!([])
        );

        let arn = format!("{PREFIX}:container-recipe/alpha/1.0.0");
        let delete = |arn: &str| {
            f.call(
                Operation::DeleteContainerRecipe,
                json!({"containerRecipeArn": arn}),
            )
        };
        f.add_reference(&format!("{PREFIX}:image-pipeline/p"), &arn);
        expect_error(
            delete(&arn),
            ErrorKind::ResourceDependencyException,
            &["image-pipeline/p"],
        );
        let beta = format!("{PREFIX}:container-recipe/beta/1.0.0");
        assert_eq!(delete(&beta).unwrap()["containerRecipeArn"], beta);
        expect_error(get(&f, &beta), ErrorKind::ResourceNotFoundException, &[]);
    }
}
