//! Image recipes: Create, Get, List, Delete, and the parts container recipes share with them.
//!
//! Recipes are immutable versions: Create makes `<name>/<x.y.z>` (a patch wildcard such as
//! `1.0.x` takes the next free patch), Get accepts a version filter and answers the newest
//! match, Delete takes one concrete version. There is no Update.
//!
//! Components are looked up as storage rows, not as the component module's types: a recipe only
//! needs a few facts about each one (platform, status, declared parameters), which it reads from
//! the row's JSON with [`ComponentFacts`]. The recipe stores the references as the caller wrote
//! them (Get returns them unchanged) and records storage references to the builds they resolved
//! to, so deleting a component a recipe uses is a `ResourceDependencyException`. Pipelines
//! reference recipes the same way, which is what makes Delete refuse a recipe in use.
//!
//! List answers the caller's own recipes, or with `owner` Shared the recipes other accounts
//! share with it (`super::sharing`; Get reads them too). Kiln has no Amazon-managed,
//! third-party or Marketplace recipes, so every other `owner` answers an empty list. A
//! recipe's components may be the caller's own or shared with it.

pub(crate) use super::components::latest_version_references;
use crate::convert::{
    check_dry_run, check_no_referrers, date, decode_row, domain_error, new_arn, not_found,
    response_tags, scoped_arn, version_error, StoreResultExt,
};
use crate::filters::Filters;
use crate::service::Service;
use kiln_domain::arn::{Arn, ResourceKind};
use kiln_domain::resources::recipe::{
    self as domain, ImageRecipe as Recipe, ParentImage, MAX_COMPONENTS,
};
use kiln_domain::resources::Resource;
use kiln_domain::version::{assign_recipe_version, SemVer};
use kiln_store::{ListQuery, Row, Txn, TxnExt};
use kiln_wire::types::*;
use kiln_wire::{ApiError, ErrorKind, RequestContext};

const KIND: ResourceKind = ResourceKind::ImageRecipe;

// ---------------------------------------------------------------------------------------------
// Shared with container recipes.

/// The few fields of a stored component record a recipe needs, named as in that record. Every
/// field is optional so that a record without one (or a later change of the record) only
/// skips the check that needs it.
#[derive(serde::Deserialize, Default)]
struct ComponentFacts {
    #[serde(default)]
    platform: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    parameters: Option<Vec<DeclaredParameterFacts>>,
}

#[derive(serde::Deserialize)]
struct DeclaredParameterFacts {
    name: String,
    #[serde(default)]
    default_value: Option<serde_json::Value>,
}

impl ComponentFacts {
    fn of(row: &Row) -> ComponentFacts {
        serde_json::from_str(&row.body).unwrap_or_default()
    }

    fn declared_parameters(&self) -> Option<Vec<domain::DeclaredParameter>> {
        self.parameters.as_ref().map(|params| {
            params
                .iter()
                .map(|p| domain::DeclaredParameter {
                    name: p.name.clone(),
                    has_default: p.default_value.as_ref().is_some_and(|v| !v.is_null()),
                })
                .collect()
        })
    }

    /// "Components with a status of DEPRECATED or DISABLED can't be added to new recipes."
    fn unusable_status(&self) -> Option<String> {
        let status = self.status.as_deref()?.to_ascii_uppercase();
        matches!(status.as_str(), "DEPRECATED" | "DISABLED").then_some(status)
    }
}

/// The recipe's components after resolution.
pub(crate) struct ResolvedComponents {
    /// The component builds the references resolved to: what the recipe depends on.
    pub build_arns: Vec<String>,
    /// Each component's platform, where its record states one, in recipe order.
    pub platforms: Vec<Option<domain::Platform>>,
}

/// Checks the components of a new recipe: within the quota, each once, each resolving to a
/// usable component in the caller's account and region, and with the parameters it declares.
pub(crate) fn resolve_components(
    tx: &mut dyn Txn,
    ctx: &RequestContext,
    components: &[domain::ComponentConfiguration],
) -> Result<ResolvedComponents, ApiError> {
    if components.len() > MAX_COMPONENTS {
        return Err(ApiError::new(
            ErrorKind::ServiceQuotaExceededException,
            format!(
                "components: a recipe can have at most {MAX_COMPONENTS} build and test components; this one has {}",
                components.len()
            ),
        ));
    }
    domain::check_component_list(components).map_err(domain_error)?;
    let mut resolved = ResolvedComponents {
        build_arns: Vec::with_capacity(components.len()),
        platforms: Vec::with_capacity(components.len()),
    };
    for (i, component) in components.iter().enumerate() {
        let field = format!("components[{i}].componentArn");
        let row =
            super::sharing::resolve_visible_required(tx, ctx, &component.component_arn, &field)?;
        let facts = ComponentFacts::of(&row);
        if let Some(status) = facts.unusable_status() {
            return Err(ApiError::invalid_request(format!(
                "{field}: the component '{}' is {status}; deprecated and disabled components can't be added to new recipes",
                row.arn
            )));
        }
        if let Some(declared) = facts.declared_parameters() {
            domain::check_component_parameters(i, &component.parameters, &declared)
                .map_err(domain_error)?;
        }
        resolved
            .platforms
            .push(facts.platform.as_deref().and_then(domain::Platform::parse));
        resolved.build_arns.push(row.arn);
    }
    Ok(resolved)
}

pub(crate) fn components_from_wire(
    components: Option<Vec<ComponentConfiguration>>,
) -> Vec<domain::ComponentConfiguration> {
    components
        .unwrap_or_default()
        .into_iter()
        .map(|c| domain::ComponentConfiguration {
            component_arn: c.component_arn.unwrap_or_default(),
            parameters: c
                .parameters
                .unwrap_or_default()
                .into_iter()
                .map(|p| domain::ComponentParameter {
                    name: p.name.unwrap_or_default(),
                    value: p.value.unwrap_or_default(),
                })
                .collect(),
        })
        .collect()
}

pub(crate) fn components_to_wire(
    components: &[domain::ComponentConfiguration],
) -> Option<Vec<ComponentConfiguration>> {
    let list: Vec<ComponentConfiguration> = components
        .iter()
        .map(|c| ComponentConfiguration {
            component_arn: Some(c.component_arn.clone()),
            parameters: (!c.parameters.is_empty()).then(|| {
                c.parameters
                    .iter()
                    .map(|p| ComponentParameter {
                        name: Some(p.name.clone()),
                        value: Some(p.value.clone()),
                    })
                    .collect()
            }),
        })
        .collect();
    (!list.is_empty()).then_some(list)
}

pub(crate) fn block_devices_from_wire(
    mappings: Option<Vec<InstanceBlockDeviceMapping>>,
) -> Vec<domain::BlockDeviceMapping> {
    mappings
        .unwrap_or_default()
        .into_iter()
        .map(|m| domain::BlockDeviceMapping {
            device_name: m.device_name,
            ebs: m.ebs.map(|e| domain::EbsSettings {
                encrypted: e.encrypted,
                delete_on_termination: e.delete_on_termination,
                iops: e.iops,
                kms_key_id: e.kms_key_id,
                snapshot_id: e.snapshot_id,
                volume_size: e.volume_size,
                volume_type: e.volume_type.map(|t| t.as_str().to_string()),
                throughput: e.throughput,
            }),
            virtual_name: m.virtual_name,
            no_device: m.no_device,
        })
        .collect()
}

pub(crate) fn block_devices_to_wire(
    mappings: &[domain::BlockDeviceMapping],
) -> Option<Vec<InstanceBlockDeviceMapping>> {
    let list: Vec<InstanceBlockDeviceMapping> = mappings
        .iter()
        .map(|m| InstanceBlockDeviceMapping {
            device_name: m.device_name.clone(),
            ebs: m.ebs.as_ref().map(|e| EbsInstanceBlockDeviceSpecification {
                encrypted: e.encrypted,
                delete_on_termination: e.delete_on_termination,
                iops: e.iops,
                kms_key_id: e.kms_key_id.clone(),
                snapshot_id: e.snapshot_id.clone(),
                volume_size: e.volume_size,
                volume_type: e.volume_type.as_deref().and_then(EbsVolumeType::from_wire),
                throughput: e.throughput,
            }),
            virtual_name: m.virtual_name.clone(),
            no_device: m.no_device.clone(),
        })
        .collect();
    (!list.is_empty()).then_some(list)
}

pub(crate) fn platform_from_wire(platform: Platform) -> domain::Platform {
    match platform {
        Platform::Windows => domain::Platform::Windows,
        Platform::Linux => domain::Platform::Linux,
        Platform::MacOS => domain::Platform::MacOs,
    }
}

/// What AWS returns for a recipe created without `workingDirectory`: "Image Builder uses /tmp
/// for Linux and macOS build instances, and C:/ for Windows build instances" (the model).
fn default_working_directory(platform: domain::Platform) -> &'static str {
    match platform {
        domain::Platform::Windows => "C:/",
        domain::Platform::Linux | domain::Platform::MacOs => "/tmp",
    }
}

pub(crate) fn platform_to_wire(platform: domain::Platform) -> Platform {
    match platform {
        domain::Platform::Windows => Platform::Windows,
        domain::Platform::Linux => Platform::Linux,
        domain::Platform::MacOs => Platform::MacOS,
    }
}

/// The ARN of a new recipe version: `semanticVersion` is concrete or a patch wildcard, which
/// takes the next free patch among the existing versions of the same normalised name. A
/// version that exists already is a `ResourceAlreadyExistsException`.
pub(crate) fn new_version_arn(
    tx: &mut dyn Txn,
    ctx: &RequestContext,
    kind: ResourceKind,
    name: &str,
    requested: &str,
) -> Result<(Arn, SemVer), ApiError> {
    let base = new_arn(ctx, kind, name);
    let rows = tx
        .list_rows(&ListQuery {
            account: ctx.account_id.clone(),
            region: ctx.region.clone(),
            kind,
            name: Some(base.name.clone()),
            after: None,
        })
        .api()?;
    let existing: Vec<SemVer> = rows
        .iter()
        .filter_map(|row| SemVer::parse(row.version.as_deref()?).ok())
        .collect();
    let version = assign_recipe_version(requested, &existing)
        .map_err(|e| version_error("semanticVersion", e))?;
    let arn = base.with_version(version);
    if existing.contains(&version) {
        return Err(ApiError::already_exists(format!(
            "The {} '{arn}' already exists; choose another semanticVersion, or a patch wildcard such as '{}.{}.x' for the next free one (names that differ only in case, spaces or underscores are the same name).",
            kind.label(),
            version.major,
            version.minor
        )));
    }
    Ok((arn, version))
}

/// The recipe an ARN names; its version may be a filter (`1.x.x`), which selects the newest
/// matching version.
pub(crate) fn get_recipe<T: Resource>(
    tx: &mut dyn Txn,
    ctx: &RequestContext,
    kind: ResourceKind,
    arn: &str,
    field: &str,
) -> Result<T, ApiError> {
    match super::sharing::resolve_visible(tx, ctx, arn, field)? {
        Some(row) if row.kind == kind => decode_row(&row),
        _ => Err(not_found(kind, arn)),
    }
}

/// Deletes one concrete recipe version, unless a pipeline (or anything else) still uses it.
/// Returns the ARN deleted, in canonical form.
pub(crate) fn delete_recipe(
    tx: &mut dyn Txn,
    ctx: &RequestContext,
    kind: ResourceKind,
    arn: &str,
    field: &str,
) -> Result<String, ApiError> {
    let Some(mut parsed) = scoped_arn(ctx, arn, field)? else {
        return Err(not_found(kind, arn));
    };
    let written = parsed.version.clone().unwrap_or_default();
    let version = SemVer::parse(&written).map_err(|_| {
        ApiError::invalid_request(format!(
            "{field}: '{arn}' does not name one version; delete takes a concrete version such as 1.0.0, not '{written}'"
        ))
    })?;
    parsed.version = Some(version.to_string());
    let canonical = parsed.to_string();
    match tx.get_row(&canonical).api()? {
        Some(row) if row.kind == kind => {}
        _ => return Err(not_found(kind, arn)),
    }
    check_no_referrers(tx, &canonical, kind.label())?;
    tx.delete_row(&canonical).api()?;
    kiln_core::sharing::remove_policy_of(tx, &canonical).api()?;
    Ok(canonical)
}

/// Stores a new recipe with its component references and tags.
pub(crate) fn store_recipe<T: Resource>(
    tx: &mut dyn Txn,
    recipe: &T,
    component_builds: &[String],
    tags: Option<&std::collections::BTreeMap<String, String>>,
) -> Result<(), ApiError> {
    let arn = recipe.arn().to_string();
    tx.put_tagged(recipe, tags).api()?;
    // Only the caller's own components are recorded as in use: a component another account
    // shares stays its owner's to delete (the recipe's next build then fails, naming it).
    let own: Vec<String> = component_builds
        .iter()
        .filter(|c| Arn::parse(c).is_ok_and(|c| c.account == recipe.arn().account))
        .cloned()
        .collect();
    if !own.is_empty() {
        tx.set_references(&arn, &own).api()?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Image recipes.

fn additional_from_wire(
    config: Option<AdditionalInstanceConfiguration>,
) -> Option<domain::AdditionalInstanceConfiguration> {
    config.map(|c| domain::AdditionalInstanceConfiguration {
        systems_manager_agent: c
            .systems_manager_agent
            .map(|a| domain::SystemsManagerAgent {
                uninstall_after_build: a.uninstall_after_build,
            }),
        user_data_override: c.user_data_override,
    })
}

fn additional_to_wire(
    config: &domain::AdditionalInstanceConfiguration,
) -> AdditionalInstanceConfiguration {
    AdditionalInstanceConfiguration {
        systems_manager_agent: config
            .systems_manager_agent
            .as_ref()
            .map(|a| SystemsManagerAgent {
                uninstall_after_build: a.uninstall_after_build,
            }),
        user_data_override: config.user_data_override.clone(),
    }
}

pub(crate) fn to_wire(tx: &mut dyn Txn, recipe: &Recipe) -> Result<ImageRecipe, ApiError> {
    let arn = recipe.arn.to_string();
    Ok(ImageRecipe {
        arn: Some(arn.clone()),
        // "This field isn't currently returned in responses" (the model).
        r#type: None,
        name: Some(recipe.name.clone()),
        description: recipe.description.clone(),
        platform: Some(platform_to_wire(recipe.platform)),
        owner: Some(recipe.arn.account.clone()),
        version: Some(recipe.version.to_string()),
        components: components_to_wire(&recipe.components),
        parent_image: Some(recipe.parent_image.clone()),
        block_device_mappings: block_devices_to_wire(&recipe.block_device_mappings),
        date_created: Some(date(recipe.date_created)),
        tags: response_tags(tx, &arn)?,
        working_directory: Some(
            recipe
                .working_directory
                .clone()
                .unwrap_or_else(|| default_working_directory(recipe.platform).to_string()),
        ),
        additional_instance_configuration: recipe
            .additional_instance_configuration
            .as_ref()
            .map(additional_to_wire),
        ami_tags: (!recipe.ami_tags.is_empty()).then(|| recipe.ami_tags.clone()),
        ami_watermarks: (!recipe.ami_watermarks.is_empty()).then(|| recipe.ami_watermarks.clone()),
    })
}

pub fn create(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: CreateImageRecipeRequest,
) -> Result<CreateImageRecipeResponse, ApiError> {
    let name = input.name.unwrap_or_default();
    let parent_image = input.parent_image.unwrap_or_default();
    let components = components_from_wire(input.components);
    let block_device_mappings = block_devices_from_wire(input.block_device_mappings);
    let additional = additional_from_wire(input.additional_instance_configuration);
    let ami_watermarks = input.ami_watermarks.unwrap_or_default();

    let parent = ParentImage::classify(&parent_image).map_err(domain_error)?;
    svc.parents
        .check_at_create_in(tx, &ctx.account_id, &ctx.region, &parent_image)
        .map_err(crate::convert::parent_error)?;
    domain::check_block_device_mappings("blockDeviceMappings", &block_device_mappings)
        .map_err(domain_error)?;
    domain::check_ami_watermarks(&ami_watermarks).map_err(domain_error)?;
    let (arn, version) = new_version_arn(
        tx,
        ctx,
        KIND,
        &name,
        input.semantic_version.as_deref().unwrap_or_default(),
    )?;
    let resolved = resolve_components(tx, ctx, &components)?;
    let platform =
        domain::image_recipe_platform(&resolved.platforms, &parent).map_err(domain_error)?;
    domain::check_additional_instance_configuration(additional.as_ref(), platform)
        .map_err(domain_error)?;
    check_dry_run(input.dry_run, "CreateImageRecipe")?;

    let recipe = Recipe {
        arn: arn.clone(),
        name,
        version,
        description: input.description,
        platform,
        parent_image,
        components,
        block_device_mappings,
        working_directory: input.working_directory,
        additional_instance_configuration: additional,
        ami_tags: input.ami_tags.unwrap_or_default(),
        ami_watermarks,
        date_created: ctx.now_millis,
    };
    store_recipe(tx, &recipe, &resolved.build_arns, input.tags.as_ref())?;
    Ok(CreateImageRecipeResponse {
        request_id: None,
        client_token: input.client_token,
        image_recipe_arn: Some(arn.to_string()),
        latest_version_references: Some(latest_version_references(&arn, &version)),
    })
}

pub fn get(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: GetImageRecipeRequest,
) -> Result<GetImageRecipeResponse, ApiError> {
    let arn = input.image_recipe_arn.unwrap_or_default();
    let recipe: Recipe = get_recipe(tx, ctx, KIND, &arn, "imageRecipeArn")?;
    let mut wire = to_wire(tx, &recipe)?;
    super::sharing::hide_foreign_tags(ctx, wire.arn.as_deref(), &mut wire.tags);
    Ok(GetImageRecipeResponse {
        request_id: None,
        latest_version_references: Some(latest_version_references(&recipe.arn, &recipe.version)),
        image_recipe: Some(wire),
    })
}

const LIST_FILTERS: &[&str] = &["name", "parentImage", "platform"];

/// A recipe's value for a ListImageRecipes filter. The name filter matches the name as written
/// or its normalised ARN form.
fn filter_value(recipe: &Recipe, filter: &str) -> Option<String> {
    match filter {
        "name" => Some(recipe.name.clone()),
        "parentImage" => Some(recipe.parent_image.clone()),
        "platform" => Some(recipe.platform.as_str().to_string()),
        _ => None,
    }
}

pub fn list(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: ListImageRecipesRequest,
) -> Result<ListImageRecipesResponse, ApiError> {
    const OP: &str = "ListImageRecipes";
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
        summaries.push(ImageRecipeSummary {
            arn: Some(arn.clone()),
            name: Some(recipe.name.clone()),
            platform: Some(platform_to_wire(recipe.platform)),
            owner: Some(recipe.arn.account.clone()),
            parent_image: Some(recipe.parent_image.clone()),
            date_created: Some(date(recipe.date_created)),
            tags: super::sharing::visible_tags(tx, ctx, &arn)?,
        });
    }
    Ok(ListImageRecipesResponse {
        request_id: None,
        image_recipe_summary_list: Some(summaries),
        next_token: page.next_token,
    })
}

pub fn delete(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: DeleteImageRecipeRequest,
) -> Result<DeleteImageRecipeResponse, ApiError> {
    let arn = input.image_recipe_arn.unwrap_or_default();
    let deleted = delete_recipe(tx, ctx, KIND, &arn, "imageRecipeArn")?;
    Ok(DeleteImageRecipeResponse {
        request_id: None,
        image_recipe_arn: Some(deleted),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use kiln_wire::Operation;
    use serde_json::{json, Value};
    use std::path::PathBuf;

    pub const ACCOUNT: &str = "123456789012";
    pub const PREFIX: &str = "arn:aws:imagebuilder:us-east-1:123456789012";

    /// A service over a fresh database in a temporary directory, removed on drop.
    pub struct Fixture {
        pub svc: Service,
        dir: PathBuf,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    impl Fixture {
        pub fn new() -> Fixture {
            let dir = std::env::temp_dir().join(format!("kiln-recipes-{}", uuid::Uuid::new_v4()));
            let svc = Service::open(&dir, kiln_store::sqlite::Sync::Normal).unwrap();
            Fixture { svc, dir }
        }

        pub fn ctx() -> RequestContext {
            RequestContext {
                request_id: "req".into(),
                account_id: ACCOUNT.into(),
                region: "us-east-1".into(),
                now_millis: 1_700_000_000_000,
                valid_until: Default::default(),
                ..Default::default()
            }
        }

        pub fn call(&self, op: Operation, input: Value) -> Result<Value, ApiError> {
            self.svc
                .call(op, &Self::ctx(), input)
                .map(|s| serde_json::from_str(&s).expect("responses are JSON"))
        }

        /// Stores a component build as a raw row, shaped like the component module's record.
        pub fn put_component(&self, name: &str, version: &str, build: u32, facts: Value) -> String {
            let arn = format!("{PREFIX}:component/{name}/{version}/{build}");
            let row = Row {
                arn: arn.clone(),
                kind: ResourceKind::Component,
                account: ACCOUNT.into(),
                region: "us-east-1".into(),
                name: name.into(),
                version: Some(version.into()),
                build: Some(build),
                body: facts.to_string(),
            };
            self.svc
                .store
                .write(|tx| tx.put_row(&row))
                .unwrap()
                .unwrap();
            arn
        }

        pub fn referrers(&self, arn: &str) -> Vec<String> {
            self.svc
                .store
                .read(|tx| tx.referrers(arn))
                .unwrap()
                .unwrap()
        }

        pub fn add_reference(&self, from: &str, to: &str) {
            self.svc
                .store
                .write(|tx| tx.set_references(from, &[to.to_string()]))
                .unwrap()
                .unwrap();
        }
    }

    pub fn expect_error(result: Result<Value, ApiError>, kind: ErrorKind, fragments: &[&str]) {
        let err = result.expect_err("the call should fail");
        assert_eq!(err.kind, kind, "{}", err.message);
        for fragment in fragments {
            assert!(
                err.message.contains(fragment),
                "'{fragment}' missing from: {}",
                err.message
            );
        }
    }

    fn create(f: &Fixture, name: &str, version: &str, extra: Value) -> Result<Value, ApiError> {
        let mut input = json!({
            "name": name,
            "semanticVersion": version,
            "parentImage": "ami-0123456789abcdef0",
            "clientToken": uuid::Uuid::new_v4().to_string(),
        });
        if let (Value::Object(base), Value::Object(extra)) = (&mut input, extra) {
            base.extend(extra);
        }
        f.call(Operation::CreateImageRecipe, input)
    }

    fn arn_of(response: &Value) -> String {
        response["imageRecipeArn"].as_str().unwrap().to_string()
    }

    fn get(f: &Fixture, arn: &str) -> Result<Value, ApiError> {
        f.call(Operation::GetImageRecipe, json!({ "imageRecipeArn": arn }))
    }

    #[test]
    fn versions_are_assigned_and_unique() {
        let f = Fixture::new();
        let first = create(&f, "My Recipe", "1.0.x", json!({})).unwrap();
        assert_eq!(
            arn_of(&first),
            format!("{PREFIX}:image-recipe/my-recipe/1.0.0")
        );
        assert_eq!(
            first["latestVersionReferences"],
            json!({
                "latestVersionArn": format!("{PREFIX}:image-recipe/my-recipe/x.x.x"),
                "latestMajorVersionArn": format!("{PREFIX}:image-recipe/my-recipe/1.x.x"),
                "latestMinorVersionArn": format!("{PREFIX}:image-recipe/my-recipe/1.0.x"),
                "latestPatchVersionArn": format!("{PREFIX}:image-recipe/my-recipe/1.0.0"),
            })
        );
        // A name that normalises alike continues the same series.
        let second = create(&f, "my_recipe", "1.0.x", json!({})).unwrap();
        assert_eq!(
            arn_of(&second),
            format!("{PREFIX}:image-recipe/my-recipe/1.0.1")
        );
        expect_error(
            create(&f, "MY-RECIPE", "1.0.1", json!({})),
            ErrorKind::ResourceAlreadyExistsException,
            &[&format!("{PREFIX}:image-recipe/my-recipe/1.0.1")],
        );
        expect_error(
            create(&f, "my-recipe", "1.x.x", json!({})),
            ErrorKind::InvalidVersionNumberException,
            &["semanticVersion:"],
        );
        let explicit = create(&f, "my-recipe", "2.0.0", json!({})).unwrap();
        assert_eq!(
            arn_of(&explicit),
            format!("{PREFIX}:image-recipe/my-recipe/2.0.0")
        );
    }

    #[test]
    fn get_answers_what_was_written_and_resolves_filters() {
        let f = Fixture::new();
        let component = f.put_component(
            "setup",
            "1.0.0",
            1,
            json!({"platform": "Linux", "status": "Active",
                   "parameters": [{"name": "Mode", "default_value": null}]}),
        );
        let written_ref = format!("{PREFIX}:component/setup/1.x.x");
        let extra = json!({
            "description": "d",
            "components": [{"componentArn": written_ref, "parameters": [{"name": "Mode", "value": ["fast"]}]}],
            "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"volumeSize": 30, "volumeType": "gp3", "throughput": 250}}],
            "workingDirectory": "/opt/build",
            "additionalInstanceConfiguration": {"systemsManagerAgent": {"uninstallAfterBuild": true}, "userDataOverride": "IyEvYmluL2Jhc2g="},
            "amiTags": {"team": "a"},
            "amiWatermarks": ["lineage-one"],
            "tags": {"env": "test"},
        });
        create(&f, "web", "1.0.0", extra.clone()).unwrap();
        create(&f, "web", "1.2.0", json!({})).unwrap();
        let got = get(&f, &format!("{PREFIX}:image-recipe/web/1.0.0")).unwrap();
        let recipe = &got["imageRecipe"];
        for member in [
            "description",
            "components",
            "blockDeviceMappings",
            "workingDirectory",
            "additionalInstanceConfiguration",
            "amiTags",
            "amiWatermarks",
            "tags",
        ] {
            assert_eq!(recipe[member], extra[member], "{member}");
        }
        // "This field isn't currently returned in responses" (the model).
        assert!(recipe.get("type").is_none());
        assert_eq!(recipe["platform"], "Linux");
        assert_eq!(recipe["owner"], ACCOUNT);
        assert_eq!(recipe["version"], "1.0.0");
        assert_eq!(recipe["parentImage"], "ami-0123456789abcdef0");
        assert_eq!(
            got["latestVersionReferences"]["latestPatchVersionArn"],
            format!("{PREFIX}:image-recipe/web/1.0.0")
        );
        // The recipe depends on the component build the reference resolved to.
        assert_eq!(
            f.referrers(&component),
            vec![format!("{PREFIX}:image-recipe/web/1.0.0")]
        );

        let newest = get(&f, &format!("{PREFIX}:image-recipe/web/1.x.x")).unwrap();
        assert_eq!(newest["imageRecipe"]["version"], "1.2.0");
        expect_error(
            get(&f, &format!("{PREFIX}:image-recipe/web/3.x.x")),
            ErrorKind::ResourceNotFoundException,
            &["web/3.x.x"],
        );
        expect_error(
            get(
                &f,
                "arn:aws:imagebuilder:us-east-1:999999999999:image-recipe/web/1.0.0",
            ),
            ErrorKind::ResourceNotFoundException,
            &[],
        );
    }

    #[test]
    fn components_must_exist_and_be_usable() {
        let f = Fixture::new();
        let missing = format!("{PREFIX}:component/nope/1.0.0/1");
        expect_error(
            create(
                &f,
                "rcp",
                "1.0.0",
                json!({"components": [{"componentArn": missing}]}),
            ),
            ErrorKind::InvalidRequestException,
            &["components[0].componentArn", &missing],
        );
        let old = f.put_component("old", "1.0.0", 1, json!({"status": "Deprecated"}));
        expect_error(
            create(
                &f,
                "rcp",
                "1.0.0",
                json!({"components": [{"componentArn": old}]}),
            ),
            ErrorKind::InvalidRequestException,
            &["components[0].componentArn", "DEPRECATED"],
        );
        let needs = f.put_component(
            "needs",
            "1.0.0",
            1,
            json!({"parameters": [{"name": "Required", "default_value": null},
                                  {"name": "Optional", "default_value": ["x"]}]}),
        );
        expect_error(
            create(
                &f,
                "rcp",
                "1.0.0",
                json!({"components": [{"componentArn": needs}]}),
            ),
            ErrorKind::InvalidRequestException,
            &["components[0].parameters", "Required"],
        );
        expect_error(
            create(
                &f,
                "rcp",
                "1.0.0",
                json!({"components": [{"componentArn": needs, "parameters": [
                    {"name": "Required", "value": ["1"]}, {"name": "Other", "value": ["2"]}]}]}),
            ),
            ErrorKind::InvalidRequestException,
            &["components[0].parameters[1].name", "Other"],
        );
        expect_error(
            create(
                &f,
                "rcp",
                "1.0.0",
                json!({"components": [{"componentArn": old}, {"componentArn": format!("{PREFIX}:component/old/x.x.x")}]}),
            ),
            ErrorKind::InvalidRequestException,
            &["components[1].componentArn", "only once"],
        );
        let too_many: Vec<Value> = (0..=MAX_COMPONENTS)
            .map(|i| json!({"componentArn": format!("{PREFIX}:component/c{i}/1.0.0/1")}))
            .collect();
        expect_error(
            create(&f, "rcp", "1.0.0", json!({"components": too_many})),
            ErrorKind::ServiceQuotaExceededException,
            &["components"],
        );
        // Nothing was written by the refused calls.
        let listed = f.call(Operation::ListImageRecipes, json!({})).unwrap();
        assert_eq!(listed["imageRecipeSummaryList"], json!([]));
    }

    #[test]
    fn platform_follows_the_components() {
        let f = Fixture::new();
        let win = f.put_component("win", "1.0.0", 1, json!({"platform": "Windows"}));
        let lin = f.put_component("lin", "1.0.0", 1, json!({"platform": "Linux"}));
        let created = create(
            &f,
            "win-recipe",
            "1.0.0",
            json!({"components": [{"componentArn": win}]}),
        )
        .unwrap();
        let got = get(&f, &arn_of(&created)).unwrap();
        assert_eq!(got["imageRecipe"]["platform"], "Windows");
        expect_error(
            create(
                &f,
                "mixed",
                "1.0.0",
                json!({"components": [{"componentArn": win}, {"componentArn": lin}]}),
            ),
            ErrorKind::InvalidRequestException,
            &["components[1].componentArn", "Windows"],
        );
        expect_error(
            create(
                &f,
                "agent",
                "1.0.0",
                json!({"components": [{"componentArn": win}],
                       "additionalInstanceConfiguration": {"systemsManagerAgent": {"uninstallAfterBuild": false}}}),
            ),
            ErrorKind::InvalidRequestException,
            &["additionalInstanceConfiguration.systemsManagerAgent"],
        );
        expect_error(
            create(
                &f,
                "bad-parent",
                "1.0.0",
                json!({"parentImage": format!("{PREFIX}:component/win/1.0.0/1")}),
            ),
            ErrorKind::InvalidRequestException,
            &["parentImage"],
        );
    }

    #[test]
    fn dry_run_checks_but_writes_nothing() {
        let f = Fixture::new();
        expect_error(
            create(&f, "rcp", "1.0.0", json!({"dryRun": true})),
            ErrorKind::DryRunOperationException,
            &[],
        );
        expect_error(
            create(&f, "rcp", "1.x.x", json!({"dryRun": true})),
            ErrorKind::InvalidVersionNumberException,
            &[],
        );
        let listed = f.call(Operation::ListImageRecipes, json!({})).unwrap();
        assert_eq!(listed["imageRecipeSummaryList"], json!([]));
    }

    #[test]
    fn delete_takes_a_version_and_refuses_recipes_in_use() {
        let f = Fixture::new();
        let component = f.put_component("c", "1.0.0", 1, json!({}));
        let arn = arn_of(
            &create(
                &f,
                "rcp",
                "1.0.0",
                json!({"components": [{"componentArn": component}]}),
            )
            .unwrap(),
        );
        let delete =
            |arn: &str| f.call(Operation::DeleteImageRecipe, json!({"imageRecipeArn": arn}));
        expect_error(
            delete(&format!("{PREFIX}:image-recipe/rcp/1.x.x")),
            ErrorKind::InvalidRequestException,
            &["imageRecipeArn", "concrete version"],
        );
        expect_error(
            delete(&format!("{PREFIX}:image-recipe/rcp/9.0.0")),
            ErrorKind::ResourceNotFoundException,
            &[],
        );
        let pipeline = format!("{PREFIX}:image-pipeline/p");
        f.add_reference(&pipeline, &arn);
        expect_error(
            delete(&arn),
            ErrorKind::ResourceDependencyException,
            &[&pipeline],
        );
        f.svc
            .store
            .write(|tx| tx.set_references(&pipeline, &[]))
            .unwrap()
            .unwrap();
        let deleted = delete(&arn).unwrap();
        assert_eq!(deleted["imageRecipeArn"], arn);
        expect_error(get(&f, &arn), ErrorKind::ResourceNotFoundException, &[]);
        // Deleting the recipe released its hold on the component.
        assert!(f.referrers(&component).is_empty());
    }

    #[test]
    fn list_filters_owners_and_pages() {
        let f = Fixture::new();
        let win = f.put_component("win", "1.0.0", 1, json!({"platform": "Windows"}));
        create(&f, "Web Server", "1.0.0", json!({})).unwrap();
        create(&f, "web-server", "1.0.1", json!({})).unwrap();
        create(
            &f,
            "dbs",
            "1.0.0",
            json!({"components": [{"componentArn": win}], "parentImage": "ami-windows"}),
        )
        .unwrap();
        let names = |response: Value| -> Vec<String> {
            response["imageRecipeSummaryList"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    s["arn"]
                        .as_str()
                        .unwrap()
                        .rsplit(':')
                        .next()
                        .unwrap()
                        .to_string()
                })
                .collect()
        };
        let list = |input: Value| f.call(Operation::ListImageRecipes, input).unwrap();
        assert_eq!(
            names(list(json!({}))),
            vec![
                "image-recipe/dbs/1.0.0",
                "image-recipe/web-server/1.0.0",
                "image-recipe/web-server/1.0.1"
            ]
        );
        assert_eq!(
            names(list(
                json!({"filters": [{"name": "name", "values": ["Web*"]}]})
            )),
            vec!["image-recipe/web-server/1.0.0"]
        );
        assert_eq!(
            names(list(
                json!({"filters": [{"name": "name", "values": ["web-*"]}]})
            )),
            vec![
                "image-recipe/web-server/1.0.0",
                "image-recipe/web-server/1.0.1"
            ]
        );
        assert_eq!(
            names(list(
                json!({"filters": [{"name": "platform", "values": ["Windows"]}]})
            )),
            vec!["image-recipe/dbs/1.0.0"]
        );
        assert_eq!(
            names(list(
                json!({"filters": [{"name": "parentImage", "values": ["ami-windows"]}]})
            )),
            vec!["image-recipe/dbs/1.0.0"]
        );
        assert!(names(list(json!({"owner": "Amazon"}))).is_empty());
        assert_eq!(names(list(json!({"owner": "Self"}))).len(), 3);
        expect_error(
            f.call(
                Operation::ListImageRecipes,
                json!({"filters": [{"name": "containerType", "values": ["DOCKER"]}]}),
            ),
            ErrorKind::InvalidRequestException,
            &["filters[0].name"],
        );

        let first = list(json!({"maxResults": 2}));
        assert_eq!(names(first.clone()).len(), 2);
        let token = first["nextToken"].as_str().unwrap().to_string();
        let rest = list(json!({"maxResults": 2, "nextToken": token}));
        assert_eq!(names(rest.clone()), vec!["image-recipe/web-server/1.0.1"]);
        assert!(rest.get("nextToken").is_none());
        let summary = &list(json!({"filters": [{"name": "name", "values": ["dbs"]}]}))
            ["imageRecipeSummaryList"][0];
        assert_eq!(summary["owner"], ACCOUNT);
        assert_eq!(summary["platform"], "Windows");
        assert_eq!(summary["parentImage"], "ami-windows");
        assert!(summary["dateCreated"].is_string());
    }
}
