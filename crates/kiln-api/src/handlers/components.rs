//! Components: CreateComponent, GetComponent, ListComponents, ListComponentBuildVersions and
//! DeleteComponent.
//!
//! A component is an AWSTOE YAML document plus settings, stored per build version
//! (`component/<name>/<x.y.z>/<build>`). CreateComponent reads the document once, here, because
//! Kiln needs its type and parameters later (recipes check the parameters they set against
//! them), and refuses documents that Image Builder could not run. The rules are
//! `kiln_toe::document::parse`'s, for the component's platform: the same validator as
//! `kiln toe validate`, so both refuse a document with the same message (schema, parameters and
//! constants, phases, steps, every action's inputs, `if`, `loop` and `{{ }}` references, each
//! problem with its phase, step and line).
//!
//! The type follows the API reference: `TEST` when the only phase is `test`, `BUILD` otherwise.
//!
//! Creating a name and version that exist makes a new build (numbered from 1), unless the new
//! build would be identical to the newest one, which is `ResourceAlreadyExistsException`, as
//! the API reference describes. The document is given inline (`data`) or read from S3 (`uri`, see
//! `crate::documents`); both go through the same checks.
//!
//! `changeDescription` defaults to "Initial version" for the name's first version (the version
//! of its oldest build, or the one being created when there is none), as AWS's examples show;
//! later versions without one have none.
//!
//! Lists are computed from all of the caller's component builds: ListComponents gives one entry
//! per version (the newest build that passed the filters) or, with `byName`, one per name
//! (ARN `.../x.x.x`, showing the newest version). Entries are in name order, then numeric
//! version order, and the page token is the last entry's sort key. `owner` Self (the default)
//! lists the caller's own components, `Shared` the builds other accounts share with it
//! (`super::sharing`); Kiln has no Amazon-managed or Marketplace components, so the other
//! values list nothing. GetComponent also reads shared builds.

use crate::convert::list_own;
use crate::convert::{
    check_dry_run, check_no_referrers, date, decode_row, get_exact, new_arn, not_found,
    response_tags, scoped_arn, version_error, StoreResultExt,
};
use crate::documents::document;
use crate::filters::Filters;
use crate::service::Service;
use kiln_domain::arn::{Arn, ResourceKind};
use kiln_domain::resources::component::{
    self as domain, next_build, ComponentStatus as DomainStatus, ComponentType as DomainType,
    DocumentParameter,
};
use kiln_domain::version::{latest_version_refs, SemVer};
use kiln_store::{ListQuery, Txn, TxnExt};
use kiln_toe::document as toe;
use kiln_wire::types::*;
use kiln_wire::{ApiError, ErrorKind, RequestContext};

use std::collections::BTreeMap;
use std::ops::Bound;

const KIND: ResourceKind = ResourceKind::Component;

/// The `changeDescription` of a name's first version when the request gives none.
pub(crate) const INITIAL_VERSION: &str = "Initial version";

/// Filter names ListComponents documents.
const LIST_FILTERS: [&str; 8] = [
    "description",
    "name",
    "platform",
    "productCodes",
    "status",
    "supportedOsVersion",
    "type",
    "version",
];

/// What CreateComponent keeps from a valid document.
#[derive(Debug)]
struct ComponentOutline {
    component_type: DomainType,
    parameters: Vec<DocumentParameter>,
}

/// Checks a component document with kiln-toe's validator (the one `kiln toe validate` uses,
/// so both give the same message) for the component's platform, and extracts its type and
/// parameters.
fn read_component_document(
    data: &str,
    platform: Option<&Platform>,
) -> Result<ComponentOutline, String> {
    let platform = match platform {
        Some(Platform::Windows) => toe::Platform::Windows,
        Some(Platform::MacOS) => toe::Platform::MacOs,
        _ => toe::Platform::Linux,
    };
    let doc = toe::parse(data, platform).map_err(|e| e.to_string())?;
    let phase_names: Vec<&str> = doc.phases.iter().map(|p| p.name.as_str()).collect();
    let parameters = doc
        .parameters
        .iter()
        .map(|p| DocumentParameter {
            name: p.name.clone(),
            kind: "string".to_string(),
            default_value: p.default.clone().map(|d| vec![d]),
            description: p.description.clone(),
        })
        .collect();
    Ok(ComponentOutline {
        component_type: DomainType::from_phases(&phase_names),
        parameters,
    })
}

/// The concrete version of a create request (the wire pattern already allows only `x.y.z`).
pub(crate) fn concrete_version(version: Option<&str>) -> Result<SemVer, ApiError> {
    SemVer::parse(version.unwrap_or_default()).map_err(|e| version_error("semanticVersion", e))
}

/// The four "latest version" references of a resource at `version`: filter ARNs under the
/// resource's name that always resolve to its newest matching version.
pub(crate) fn latest_version_references(arn: &Arn, version: &SemVer) -> LatestVersionReferences {
    let refs = latest_version_refs(version);
    let under = |filter: String| {
        Arn {
            version: Some(filter),
            build: None,
            ..arn.clone()
        }
        .to_string()
    };
    LatestVersionReferences {
        latest_version_arn: Some(under(refs.latest)),
        latest_major_version_arn: Some(under(refs.latest_major)),
        latest_minor_version_arn: Some(under(refs.latest_minor)),
        latest_patch_version_arn: Some(under(refs.latest_patch)),
    }
}

/// Sort keys: name, then version and build compared numerically (zero-padded to the ten
/// digits of the largest node and build number).
pub(crate) fn version_key(arn: &Arn, version: &SemVer) -> String {
    format!(
        "{}/{}/{:010}.{:010}.{:010}",
        arn.kind.segment(),
        arn.name,
        version.major,
        version.minor,
        version.patch
    )
}

pub(crate) fn build_key(arn: &Arn, version: &SemVer, build: u32) -> String {
    format!("{}/{build:010}", version_key(arn, version))
}

pub(crate) fn name_key(arn: &Arn) -> String {
    format!("{}/{}", arn.kind.segment(), arn.name)
}

/// The ARN of a list entry that stands for every version of a name.
pub(crate) fn any_version_arn(arn: &Arn) -> String {
    Arn {
        version: Some("x.x.x".to_string()),
        build: None,
        ..arn.clone()
    }
    .to_string()
}

/// Whether a filter list names `name`; some filters change what a list includes by default.
pub(crate) fn has_filter(filters: Option<&Vec<Filter>>, name: &str) -> bool {
    filters
        .into_iter()
        .flatten()
        .any(|f| f.name.as_deref() == Some(name))
}

/// Keeps, per key, the newest item (by version, then build), in key order after `after`.
pub(crate) fn newest_per_key<T>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> String,
    rank: impl Fn(&T) -> (SemVer, u32),
    after: Option<&str>,
) -> Vec<T> {
    let mut newest: BTreeMap<String, T> = BTreeMap::new();
    for item in items {
        let k = key(&item);
        match newest.get(&k) {
            Some(kept) if rank(kept) >= rank(&item) => {}
            _ => {
                newest.insert(k, item);
            }
        }
    }
    let start = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_string()));
    let keys: Vec<String> = newest
        .range((start, Bound::Unbounded))
        .map(|(k, _)| k.clone())
        .collect();
    keys.into_iter().filter_map(|k| newest.remove(&k)).collect()
}

fn all_own(tx: &mut dyn Txn, ctx: &RequestContext) -> Result<Vec<domain::Component>, ApiError> {
    list_own(tx, ctx, KIND, None, None)
}

/// Every build of every version of the component named in `arn`.
fn all_builds_of(tx: &mut dyn Txn, arn: &Arn) -> Result<Vec<domain::Component>, ApiError> {
    tx.list(&ListQuery {
        account: arn.account.clone(),
        region: arn.region.clone(),
        kind: KIND,
        name: Some(arn.name.clone()),
        after: None,
    })
    .api()
}

fn platform_to_wire(platform: &str) -> Option<Platform> {
    Platform::from_wire(platform)
}

fn type_to_wire(t: DomainType) -> ComponentType {
    match t {
        DomainType::Build => ComponentType::Build,
        DomainType::Test => ComponentType::Test,
    }
}

fn status_to_wire(s: DomainStatus) -> ComponentStatus {
    match s {
        DomainStatus::Active => ComponentStatus::Active,
        DomainStatus::Deprecated => ComponentStatus::Deprecated,
        DomainStatus::Disabled => ComponentStatus::Disabled,
    }
}

fn state_to_wire(s: DomainStatus) -> ComponentState {
    ComponentState {
        status: Some(status_to_wire(s)),
        reason: None,
    }
}

fn non_empty(v: &[String]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.to_vec())
}

/// The model spells parameter types `String`, `Integer`, `Boolean`, `StringList`
/// (`ComponentParameterType`); documents spell them as AWSTOE does (`string`).
fn wire_parameter_type(kind: &str) -> String {
    let mut chars = kind.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

fn parameters_to_wire(parameters: &[DocumentParameter]) -> Option<Vec<ComponentParameterDetail>> {
    (!parameters.is_empty()).then(|| {
        parameters
            .iter()
            .map(|p| ComponentParameterDetail {
                name: Some(p.name.clone()),
                r#type: Some(wire_parameter_type(&p.kind)),
                default_value: p.default_value.clone(),
                description: p.description.clone(),
            })
            .collect()
    })
}

fn to_wire(tx: &mut dyn Txn, c: &domain::Component) -> Result<Component, ApiError> {
    let arn = c.arn.to_string();
    Ok(Component {
        arn: Some(arn.clone()),
        name: Some(c.name.clone()),
        version: Some(c.version.to_string()),
        description: c.description.clone(),
        change_description: c.change_description.clone(),
        r#type: Some(type_to_wire(c.component_type)),
        platform: platform_to_wire(&c.platform),
        supported_os_versions: non_empty(&c.supported_os_versions),
        state: Some(state_to_wire(c.status)),
        parameters: parameters_to_wire(&c.parameters),
        owner: Some(c.owner.clone()),
        data: Some(c.data.clone()),
        kms_key_id: c.kms_key_id.clone(),
        // AWS encrypts all component data at rest and documents this as always true.
        encrypted: Some(true),
        date_created: Some(date(c.date_created)),
        tags: response_tags(tx, &arn)?,
        publisher: None,
        // AWS shows it only on obfuscated (Marketplace) components, which Kiln has none of.
        obfuscate: None,
        product_codes: None,
    })
}

fn to_summary(tx: &mut dyn Txn, c: &domain::Component) -> Result<ComponentSummary, ApiError> {
    let arn = c.arn.to_string();
    Ok(ComponentSummary {
        arn: Some(arn.clone()),
        name: Some(c.name.clone()),
        version: Some(c.version.to_string()),
        platform: platform_to_wire(&c.platform),
        supported_os_versions: non_empty(&c.supported_os_versions),
        state: Some(state_to_wire(c.status)),
        r#type: Some(type_to_wire(c.component_type)),
        owner: Some(c.owner.clone()),
        description: c.description.clone(),
        change_description: c.change_description.clone(),
        date_created: Some(date(c.date_created)),
        tags: response_tags(tx, &arn)?,
        publisher: None,
        // AWS shows it only on obfuscated (Marketplace) components, which Kiln has none of.
        obfuscate: None,
    })
}

fn to_version_entry(c: &domain::Component, arn: String) -> ComponentVersion {
    ComponentVersion {
        arn: Some(arn),
        name: Some(c.name.clone()),
        version: Some(c.version.to_string()),
        description: c.description.clone(),
        platform: platform_to_wire(&c.platform),
        supported_os_versions: non_empty(&c.supported_os_versions),
        r#type: Some(type_to_wire(c.component_type)),
        owner: Some(c.owner.clone()),
        date_created: Some(date(c.date_created)),
        status: Some(status_to_wire(c.status)),
        product_codes: None,
    }
}

pub fn create(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: CreateComponentRequest,
) -> Result<CreateComponentResponse, ApiError> {
    let name = input.name.clone().unwrap_or_default();
    let version = concrete_version(input.semantic_version.as_deref())?;
    let (data, field) = document(ctx, input.data.as_deref(), input.uri.as_deref())?;
    let outline = read_component_document(data, input.platform.as_ref())
        .map_err(|problem| ApiError::invalid_request(format!("{field}: {problem}")))?;
    let version_arn = new_arn(ctx, KIND, &name).with_version(version);
    let same_name = all_builds_of(tx, &version_arn)?;
    let change_description = input.change_description.or_else(|| {
        let first = same_name.iter().min_by_key(|c| (c.date_created, c.build));
        first
            .is_none_or(|c| c.version == version)
            .then(|| INITIAL_VERSION.to_string())
    });
    let mut component = domain::Component {
        arn: version_arn.clone(),
        name,
        version,
        build: 0,
        description: input.description,
        change_description,
        component_type: outline.component_type,
        platform: input
            .platform
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        supported_os_versions: input.supported_os_versions.unwrap_or_default(),
        parameters: outline.parameters,
        owner: ctx.account_id.clone(),
        data: data.to_string(),
        kms_key_id: input.kms_key_id,
        status: DomainStatus::Active,
        date_created: ctx.now_millis,
    };
    let existing: Vec<domain::Component> = same_name
        .into_iter()
        .filter(|c| c.version == version)
        .collect();
    if let Some(newest) = existing.iter().max_by_key(|c| c.build) {
        if newest.same_content(&component) {
            return Err(ApiError::already_exists(format!(
                "The component '{}' already exists with the same content; change the document or settings to create a new build, or use a new semanticVersion.",
                newest.arn
            )));
        }
    }
    let build = next_build(existing.iter().map(|c| c.build)).ok_or_else(|| {
        ApiError::new(
            ErrorKind::ServiceQuotaExceededException,
            format!("The component version '{version_arn}' has no build numbers left."),
        )
    })?;
    check_dry_run(input.dry_run, "CreateComponent")?;
    component.arn = version_arn.with_build(build);
    component.build = build;
    tx.put_tagged(&component, input.tags.as_ref()).api()?;
    let arn = component.arn.to_string();
    Ok(CreateComponentResponse {
        request_id: None,
        client_token: input.client_token,
        component_build_version_arn: Some(arn),
        latest_version_references: Some(latest_version_references(&component.arn, &version)),
    })
}

pub fn get(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: GetComponentRequest,
) -> Result<GetComponentResponse, ApiError> {
    let arn = input.component_build_version_arn.unwrap_or_default();
    let row = super::sharing::resolve_visible(tx, ctx, &arn, "componentBuildVersionArn")?
        .filter(|row| row.kind == KIND)
        .ok_or_else(|| not_found(KIND, &arn))?;
    let component: domain::Component = decode_row(&row)?;
    let mut wire = to_wire(tx, &component)?;
    super::sharing::hide_foreign_tags(ctx, wire.arn.as_deref(), &mut wire.tags);
    Ok(GetComponentResponse {
        request_id: None,
        latest_version_references: Some(latest_version_references(
            &component.arn,
            &component.version,
        )),
        component: Some(wire),
    })
}

/// Whether a build passes the ListComponents filters. The supported OS versions pass when any
/// of them does (the name filter's two forms are handled by `Filters`).
fn passes(filters: &Filters, c: &domain::Component) -> bool {
    let os_versions: Vec<Option<&str>> = if c.supported_os_versions.is_empty() {
        vec![None]
    } else {
        c.supported_os_versions
            .iter()
            .map(|v| Some(v.as_str()))
            .collect()
    };
    os_versions.iter().any(|os| {
        filters.accept(|filter| match filter {
            "description" => c.description.clone(),
            "name" => Some(c.name.clone()),
            "platform" => Some(c.platform.clone()),
            "status" => Some(c.status.as_str().to_string()),
            "supportedOsVersion" => os.map(str::to_string),
            "type" => Some(c.component_type.as_str().to_string()),
            "version" => Some(c.version.to_string()),
            // Kiln has no Marketplace components, so nothing has product codes.
            _ => None,
        })
    })
}

pub fn list(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: ListComponentsRequest,
) -> Result<ListComponentsResponse, ApiError> {
    const OP: &str = "ListComponents";
    let filters = Filters::parse(input.filters.as_ref(), &LIST_FILTERS)?;
    let by_name = input.by_name == Some(true);
    if by_name && has_filter(input.filters.as_ref(), "version") {
        return Err(ApiError::new(
            ErrorKind::InvalidParameterCombinationException,
            "byName and filters: byName cannot be combined with the version filter",
        ));
    }
    let after = svc.pager.decode(OP, ctx, input.next_token.as_deref())?;
    // The caller's own components, or those shared with it: nothing is managed or sold in Kiln.
    let all: Vec<domain::Component> =
        super::sharing::listed(tx, ctx, KIND, input.owner.as_ref(), None)?;
    // Deprecated versions are left out unless the caller filters on status.
    let include_deprecated = has_filter(input.filters.as_ref(), "status");
    let matching = all.into_iter().filter(|c| {
        (include_deprecated || c.status != DomainStatus::Deprecated) && passes(&filters, c)
    });
    let entries = newest_per_key(
        matching,
        |c| {
            if by_name {
                name_key(&c.arn)
            } else {
                version_key(&c.arn, &c.version)
            }
        },
        |c| (c.version, c.build),
        after.as_deref(),
    );
    let page = svc.pager.page(OP, ctx, entries, input.max_results, |c| {
        if by_name {
            name_key(&c.arn)
        } else {
            version_key(&c.arn, &c.version)
        }
    });
    let versions = page
        .items
        .iter()
        .map(|c| {
            let arn = if by_name {
                any_version_arn(&c.arn)
            } else {
                c.version_arn().to_string()
            };
            to_version_entry(c, arn)
        })
        .collect();
    Ok(ListComponentsResponse {
        request_id: None,
        component_version_list: Some(versions),
        next_token: page.next_token,
    })
}

/// The builds a ListComponentBuildVersions request covers: those of one version, or all of the
/// caller's. A version that does not exist (or is not the caller's) has none.
fn builds_to_list(
    tx: &mut dyn Txn,
    ctx: &RequestContext,
    version_arn: Option<&str>,
) -> Result<Vec<domain::Component>, ApiError> {
    let Some(version_arn) = version_arn else {
        return all_own(tx, ctx);
    };
    let Some(parsed) = scoped_arn(ctx, version_arn, "componentVersionArn")? else {
        // Another account's version: the builds of it shared with the caller.
        return super::sharing::shared_builds(tx, ctx, KIND, version_arn, "componentVersionArn");
    };
    let version = concrete_version_of(&parsed, "componentVersionArn")?;
    if parsed.kind != KIND {
        return Ok(Vec::new());
    }
    Ok(all_builds_of(tx, &parsed)?
        .into_iter()
        .filter(|c| c.version == version)
        .collect())
}

fn concrete_version_of(arn: &Arn, field: &str) -> Result<SemVer, ApiError> {
    SemVer::parse(arn.version.as_deref().unwrap_or_default()).map_err(|e| version_error(field, e))
}

pub fn list_build_versions(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: ListComponentBuildVersionsRequest,
) -> Result<ListComponentBuildVersionsResponse, ApiError> {
    const OP: &str = "ListComponentBuildVersions";
    let after = svc.pager.decode(OP, ctx, input.next_token.as_deref())?;
    let builds = builds_to_list(tx, ctx, input.component_version_arn.as_deref())?
        .into_iter()
        .filter(|c| c.status != DomainStatus::Deprecated);
    let key = |c: &domain::Component| build_key(&c.arn, &c.version, c.build);
    let sorted = newest_per_key(builds, key, |c| (c.version, c.build), after.as_deref());
    let page = svc.pager.page(OP, ctx, sorted, input.max_results, key);
    let mut summaries = Vec::with_capacity(page.items.len());
    for c in &page.items {
        let mut summary = to_summary(tx, c)?;
        super::sharing::hide_foreign_tags(ctx, summary.arn.as_deref(), &mut summary.tags);
        summaries.push(summary);
    }
    Ok(ListComponentBuildVersionsResponse {
        request_id: None,
        component_summary_list: Some(summaries),
        next_token: page.next_token,
    })
}

pub fn delete(
    _svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: DeleteComponentRequest,
) -> Result<DeleteComponentResponse, ApiError> {
    let arn = input.component_build_version_arn.unwrap_or_default();
    let _: domain::Component = get_exact(tx, ctx, KIND, &arn, "componentBuildVersionArn")?;
    check_no_referrers(tx, &arn, KIND.label())?;
    tx.delete_row(&arn).api()?;
    // Its policy and the grants it made go with it.
    kiln_core::sharing::remove_policy_of(tx, &arn).api()?;
    Ok(DeleteComponentResponse {
        request_id: None,
        component_build_version_arn: Some(arn),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn parameter_types_take_the_models_spelling() {
        assert_eq!(wire_parameter_type("string"), "String");
        assert_eq!(wire_parameter_type("stringList"), "StringList");
        assert_eq!(wire_parameter_type("String"), "String");
    }

    /// A parameter's name and default, as expected from a document.
    type Expected = &'static [(&'static str, Option<&'static str>)];

    /// Real Linux documents from public repositories (aws-cdk tests, aws-cdk-golden-ami-pipeline,
    /// amazon-ec2-image-builder-samples, the user guide), copied verbatim, with the type and
    /// parameters each must give.
    const REAL_DOCUMENTS: &[(&str, &str, DomainType, Expected)] = &[
        (
            "aws-cdk required-parameters",
            "name: test-component\nschemaVersion: \"1.0\"\nphases:\n  - name: build\n    steps:\n      - name: hello-world-build\n        action: ExecuteBash\n        inputs:\n          commands:\n            - echo \"Hello build!\"\n",
            DomainType::Build,
            &[],
        ),
        (
            "golden-ami test1",
            "name: HelloWorldTestingDocument\ndescription: This is hello world testing document.\nschemaVersion: 1.0\nphases:\n  - name: test\n    steps:\n      - name: HelloWorldStep\n        action: ExecuteBash\n        inputs:\n          commands:\n            - echo \"Hello World Again!.\"\n            - sudo cat ~/test.txt\n",
            DomainType::Test,
            &[],
        ),
        (
            "golden-ami build1",
            "name: Install1\ndescription: DummyInstall\nschemaVersion: 1.0\nparameters:\n  - testparam:\n      type: string\n      default: \"test\"\n      description: \"sample parameter example.\"\nphases:\n    - name: build\n      steps:\n        - name: UpdatePackage\n          action: ExecuteBash\n          inputs:\n            commands:\n                - echo \"First\"\n                - sudo echo First > ~/test.txt\n                - sudo cat ~/test.txt",
            DomainType::Build,
            &[("testparam", Some("test"))],
        ),
        (
            "samples debugging install",
            "name: debugging-sample-install\ndescription: Installs one package and verifies the install.\nschemaVersion: 1.0\nparameters:\n  - package:\n      type: string\n      description: Package to install.\nphases:\n  - name: build\n    steps:\n      - name: InstallPackage\n        action: ExecuteBash\n        inputs:\n          commands:\n            - dnf -y install {{ package }}\n  - name: validate\n    steps:\n      - name: VerifyInstalled\n        action: ExecuteBash\n        inputs:\n          commands:\n            - rpm -q {{ package }}\n",
            DomainType::Build,
            &[("package", None)],
        ),
        (
            "user guide PingHosts (loop)",
            "name: PingHosts\nschemaVersion: 1.0\nparameters:\n  - Hosts:\n      type: string\n      default: 127.0.0.1,amazon.com\n      description: A comma separated list of hosts to ping.\nphases:\n  - name: build\n    steps:\n      - name: Ping\n        action: ExecuteBash\n        loop:\n          forEach:\n            list: '{{ Hosts }}'\n            delimiter: ','\n        inputs:\n          commands:\n            - ping -c 4 {{ loop.value }}\n",
            DomainType::Build,
            &[("Hosts", Some("127.0.0.1,amazon.com"))],
        ),
    ];

    #[test]
    fn accepts_real_documents_with_their_type_and_parameters() {
        for (label, data, expected_type, expected_parameters) in REAL_DOCUMENTS {
            let outline = read_component_document(data, None)
                .unwrap_or_else(|e| panic!("{label}: rejected: {e}"));
            assert_eq!(outline.component_type, *expected_type, "{label}");
            let got: Vec<(&str, Option<&str>)> = outline
                .parameters
                .iter()
                .map(|p| {
                    (
                        p.name.as_str(),
                        p.default_value.as_ref().map(|d| d[0].as_str()),
                    )
                })
                .collect();
            assert_eq!(got, *expected_parameters, "{label}");
        }
    }

    const STEP: &str = "    steps:\n      - name: S\n        action: ExecuteBash\n        inputs: {commands: [echo]}\n";

    fn doc(phases: &[&str]) -> String {
        let mut text = "schemaVersion: 1.0\nphases:\n".to_string();
        for p in phases {
            text.push_str(&format!("  - name: {p}\n{STEP}"));
        }
        text
    }

    #[test]
    fn derives_the_type_from_the_phases() {
        for (phases, expected) in [
            (&["test"][..], DomainType::Test),
            (&["build"][..], DomainType::Build),
            (&["validate"][..], DomainType::Build),
            (&["build", "validate", "test"][..], DomainType::Build),
            (&["build", "test"][..], DomainType::Build),
        ] {
            let outline = read_component_document(&doc(phases), None).unwrap();
            assert_eq!(outline.component_type, expected, "{phases:?}");
        }
    }

    /// Malformed documents and a part of the message each must produce (the messages come
    /// from kiln-toe's validator; its own tests cover every rule).
    const MALFORMED: &[(&str, &str)] = &[
        ("", "a component document is a mapping"),
        ("- a\n- b\n", "a component document is a mapping"),
        (
            "schemaVersion: 1.0\nphases:\n  - name: build\n   steps: [\n",
            "the document is not valid YAML: ",
        ),
        ("phases: []\n", "schemaVersion is required"),
        ("schemaVersion: 2.0\nphases: []\n", "line 1: schemaVersion must be 1.0"),
        ("schemaVersion: 1.0\n", "phases is required"),
        ("schemaVersion: 1.0\nphases: []\n", "phases must be a non-empty list"),
        (
            "schemaVersion: 1.0\nphases:\n  - name: build\n",
            "phase 'build', line 3: steps must be a non-empty list",
        ),
        (
            "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: A\n",
            "phase 'build', step 'A', line 5: action is required",
        ),
        (
            "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - {name: A, action: Reboot}\n      - {name: A, action: Reboot}\n",
            "step `A` appears twice in this phase",
        ),
        (
            "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - {name: A, action: Reboot, onFailure: Retry}\n",
            "onFailure must be Abort, Continue or Ignore",
        ),
        (
            "schemaVersion: 1.0\nphases:\n  - name: deploy\n    steps:\n      - {name: A, action: Reboot}\n",
            "unknown phase name `deploy`",
        ),
        (
            "schemaVersion: 1.0\nparameters:\n  - ab: {type: string}\nphases:\n  - name: build\n    steps:\n      - {name: A, action: Reboot}\n",
            "parameters[0]: name `ab` must be 3-128",
        ),
        (
            "schemaVersion: 1.0\nparameters:\n  - Abc: {type: integer}\nphases:\n  - name: build\n    steps:\n      - {name: A, action: Reboot}\n",
            "type `integer` is not supported",
        ),
        (
            "schemaVersion: 1.0\nconstants:\n  - Abc: {type: string}\nphases:\n  - name: build\n    steps:\n      - {name: A, action: Reboot}\n",
            "constants[0] `Abc`: value is required",
        ),
        (
            "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - {name: A, action: ExecutePowerShell, inputs: {commands: [x]}}\n",
            "action ExecutePowerShell is not supported on Linux",
        ),
    ];

    #[test]
    fn rejects_malformed_documents_with_a_message_naming_the_member() {
        for (data, expected) in MALFORMED {
            let err = read_component_document(data, None).expect_err(data);
            assert!(
                err.contains(expected),
                "document:\n{data}\nexpected a message containing: {expected}\ngot: {err}"
            );
        }
    }

    #[test]
    fn syntax_errors_give_the_line_and_column() {
        let err = read_component_document("schemaVersion: 1.0\nphases:\n  - name: 'build\n", None)
            .unwrap_err();
        assert!(
            err.starts_with("line 4: the document is not valid YAML"),
            "{err}"
        );
    }

    /// Every component document of the public corpus, validated for its platform (a `mixed`
    /// one for Linux or Windows), is accepted, except the few that are not valid YAML or break
    /// a documented rule. (kiln-toe's corpus test covers the Linux documents in detail.)
    #[test]
    fn corpus_documents_are_accepted() {
        let root = std::env::var("KILN_CORPUS_DIR").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/corpus").to_string()
        });
        let sources = std::fs::read_to_string(format!("{root}/SOURCES.tsv"))
            .expect("the corpus (set KILN_CORPUS_DIR)");
        // Documents that break a documented rule, and why.
        let expected_rejections = [
            // `phases` is a mapping, not a list.
            (
                "terraform-aws-imagebuilder__example_examplea_component.yaml",
                "phases must be a non-empty list",
            ),
            // Doc snippets pasted together: two steps share a name in one phase.
            (
                "aws_imagebuilder_component__test_set-file-encoding.yaml",
                "step names are unique in a phase",
            ),
            (
                "aws_imagebuilder_component__test_reboot.yaml",
                "step names are unique in a phase",
            ),
            // Doc snippets pasted together: a parameter and a constant are both named Source.
            (
                "aws_imagebuilder_component__test_test.yaml",
                "unique across parameters and constants",
            ),
            // Invalid YAML upstream (the corpus keeps them as negative tests).
            (
                "Components_Windows_chef-recipe-execution-windows_component.yaml",
                "line 51: the document is not valid YAML",
            ),
            (
                "ec2-image-builder-components__install-vscode.yaml",
                "line 17: the document is not valid YAML",
            ),
        ];
        let mut checked = 0;
        let mut failures = Vec::new();
        for line in sources.lines() {
            let cols: Vec<&str> = line.split('\t').collect();
            let (Some(file), Some(&"component"), Some(platform)) =
                (cols.first(), cols.get(5), cols.get(6))
            else {
                continue;
            };
            let data = std::fs::read_to_string(format!("{root}/{file}")).expect(file);
            checked += 1;
            let validate = |p: Platform| read_component_document(&data, Some(&p));
            let result = match *platform {
                "Windows" => validate(Platform::Windows),
                "macOS" => validate(Platform::MacOS),
                "mixed" => validate(Platform::Linux).or_else(|_| validate(Platform::Windows)),
                _ => validate(Platform::Linux),
            };
            match (
                expected_rejections.iter().find(|(f, _)| file.ends_with(f)),
                result,
            ) {
                (Some((_, why)), Err(e)) if e.contains(why) => {}
                (None, Ok(_)) => {}
                (expected, got) => {
                    failures.push(format!("{file}: expected {expected:?}, got {got:?}"))
                }
            }
        }
        assert_eq!(checked, 122, "the corpus has 122 component documents");
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn data_and_uri_are_exclusive_and_uri_comes_from_the_fetch() {
        let ctx = RequestContext {
            fetched_document: Some(kiln_wire::FetchedDocument {
                uri: "s3://b/k".into(),
                text: "fetched".into(),
            }),
            ..Default::default()
        };
        let (text, field) = document(&ctx, Some("x"), None).unwrap();
        assert_eq!((text, field.as_str()), ("x", "data"));
        let (text, field) = document(&ctx, None, Some("s3://b/k")).unwrap();
        assert_eq!((text, field.as_str()), ("fetched", "uri s3://b/k"));
        let both = document(&ctx, Some("x"), Some("s3://b/k")).unwrap_err();
        assert_eq!(both.kind, ErrorKind::InvalidParameterCombinationException);
        assert!(both.message.contains("data and uri"));
        let neither = document(&ctx, None, None).unwrap_err();
        assert_eq!(neither.kind, ErrorKind::InvalidRequestException);
        assert!(neither.message.contains("data and uri"));
        let other = document(&ctx, None, Some("s3://b/other")).unwrap_err();
        assert_eq!(other.kind, ErrorKind::ServiceUnavailableException);
    }

    #[test]
    fn latest_references_and_sort_keys() {
        let arn =
            Arn::parse("arn:aws:imagebuilder:us-east-1:123456789012:component/c/1.2.3/4").unwrap();
        let refs = latest_version_references(&arn, &SemVer::new(1, 2, 3));
        let prefix = "arn:aws:imagebuilder:us-east-1:123456789012:component/c/";
        assert_eq!(refs.latest_version_arn.unwrap(), format!("{prefix}x.x.x"));
        assert_eq!(
            refs.latest_major_version_arn.unwrap(),
            format!("{prefix}1.x.x")
        );
        assert_eq!(
            refs.latest_minor_version_arn.unwrap(),
            format!("{prefix}1.2.x")
        );
        assert_eq!(
            refs.latest_patch_version_arn.unwrap(),
            format!("{prefix}1.2.3")
        );
        assert!(
            version_key(&arn, &SemVer::new(1, 9, 0)) < version_key(&arn, &SemVer::new(1, 10, 0))
        );
        assert_eq!(any_version_arn(&arn), format!("{prefix}x.x.x"));
    }

    #[test]
    fn newest_per_key_keeps_the_newest_and_starts_after_the_cursor() {
        let v = |p| SemVer::new(1, 0, p);
        let items = vec![
            ("a", v(1), 1),
            ("a", v(2), 1),
            ("b", v(1), 2),
            ("b", v(1), 1),
            ("c", v(0), 1),
        ];
        let kept = newest_per_key(items.clone(), |i| i.0.to_string(), |i| (i.1, i.2), None);
        assert_eq!(kept, vec![("a", v(2), 1), ("b", v(1), 2), ("c", v(0), 1)]);
        let rest = newest_per_key(items, |i| i.0.to_string(), |i| (i.1, i.2), Some("a"));
        assert_eq!(rest.len(), 2);
    }

    /// Calls through the whole service (validation, transaction, handler) on a fresh store.
    pub(crate) struct Harness {
        svc: Service,
        dir: std::path::PathBuf,
        pub ctx: RequestContext,
    }

    impl Harness {
        pub fn new() -> Harness {
            let dir = std::env::temp_dir().join(format!("kiln-test-{}", uuid::Uuid::new_v4()));
            let svc = Service::open(&dir, kiln_store::sqlite::Sync::Normal).unwrap();
            let ctx = RequestContext {
                request_id: "req".into(),
                account_id: "123456789012".into(),
                region: "us-east-1".into(),
                now_millis: 1_700_000_000_000,
                valid_until: Default::default(),
                ..Default::default()
            };
            Harness { svc, dir, ctx }
        }

        pub fn call(
            &self,
            op: kiln_wire::Operation,
            input: serde_json::Value,
        ) -> Result<serde_json::Value, ApiError> {
            self.svc
                .call(op, &self.ctx, input)
                .map(|s| serde_json::from_str(&s).expect("responses are JSON"))
        }

        /// Writes directly to storage, for what other resources would record (references).
        pub fn svc_write(
            &self,
            write: impl FnOnce(&mut dyn Txn) -> Result<(), kiln_store::StoreError>,
        ) {
            self.svc.store.write(|tx| write(tx)).unwrap().unwrap();
        }
    }

    impl Drop for Harness {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    use kiln_wire::Operation as Op;
    use serde_json::json;

    const PREFIX: &str = "arn:aws:imagebuilder:us-east-1:123456789012:component/";

    fn create(h: &Harness, name: &str, version: &str, data: &str) -> Result<String, ApiError> {
        let out = h.call(
            Op::CreateComponent,
            json!({"name": name, "semanticVersion": version, "platform": "Linux",
                   "data": data, "clientToken": uuid::Uuid::new_v4().to_string()}),
        )?;
        Ok(out["componentBuildVersionArn"]
            .as_str()
            .unwrap()
            .to_string())
    }

    #[test]
    fn builds_versions_and_latest_references() {
        let h = Harness::new();
        let build = doc(&["build"]);
        let first = create(&h, "My Comp", "1.0.0", &build).unwrap();
        assert_eq!(first, format!("{PREFIX}my-comp/1.0.0/1"));
        // The same content again is refused, naming the existing build.
        let again = create(&h, "my_comp", "1.0.0", &build).unwrap_err();
        assert_eq!(again.kind, ErrorKind::ResourceAlreadyExistsException);
        assert!(again.message.contains(&first), "{}", again.message);
        // Changed content under the same (normalised) name and version is build 2.
        let second = create(&h, "my_comp", "1.0.0", &doc(&["test"])).unwrap();
        assert_eq!(second, format!("{PREFIX}my-comp/1.0.0/2"));
        create(&h, "My Comp", "1.10.0", &build).unwrap();
        create(&h, "My Comp", "1.9.0", &build).unwrap();

        let got = h
            .call(
                Op::GetComponent,
                json!({"componentBuildVersionArn": format!("{PREFIX}my-comp/1.x.x")}),
            )
            .unwrap();
        assert_eq!(got["component"]["version"], "1.10.0");
        assert_eq!(
            got["latestVersionReferences"]["latestMinorVersionArn"],
            format!("{PREFIX}my-comp/1.10.x")
        );
        let got = h
            .call(
                Op::GetComponent,
                json!({"componentBuildVersionArn": format!("{PREFIX}my-comp/1.0.0")}),
            )
            .unwrap();
        let c = &got["component"];
        assert_eq!(c["arn"], second);
        assert_eq!(c["type"], "TEST");
        assert_eq!(c["data"], doc(&["test"]));
        assert_eq!(c["owner"], "123456789012");
        assert_eq!(c["encrypted"], true);
        assert_eq!(c["state"]["status"], "ACTIVE");

        let missing = h
            .call(
                Op::GetComponent,
                json!({"componentBuildVersionArn": format!("{PREFIX}my-comp/2.x.x")}),
            )
            .unwrap_err();
        assert_eq!(missing.kind, ErrorKind::ResourceNotFoundException);
    }

    #[test]
    fn lists_versions_names_and_builds_with_filters_and_pages() {
        let h = Harness::new();
        for (name, version, phases) in [
            ("alpha", "1.0.0", &["build"][..]),
            ("alpha", "1.0.0", &["build", "validate"][..]),
            ("alpha", "2.0.0", &["build"][..]),
            ("beta", "1.0.0", &["test"][..]),
            ("gamma", "0.1.0", &["build"][..]),
        ] {
            create(&h, name, version, &doc(phases)).unwrap();
        }
        let list = |input: serde_json::Value| h.call(Op::ListComponents, input).unwrap();
        let arns = |out: &serde_json::Value| -> Vec<String> {
            out["componentVersionList"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| {
                    v["arn"]
                        .as_str()
                        .unwrap()
                        .trim_start_matches(PREFIX)
                        .to_string()
                })
                .collect()
        };
        assert_eq!(
            arns(&list(json!({}))),
            vec!["alpha/1.0.0", "alpha/2.0.0", "beta/1.0.0", "gamma/0.1.0"]
        );
        assert_eq!(
            arns(&list(json!({"byName": true}))),
            vec!["alpha/x.x.x", "beta/x.x.x", "gamma/x.x.x"]
        );
        let by_name = list(json!({"byName": true}));
        assert_eq!(by_name["componentVersionList"][0]["version"], "2.0.0");
        assert_eq!(
            arns(&list(
                json!({"filters": [{"name": "type", "values": ["TEST"]}]})
            )),
            vec!["beta/1.0.0"]
        );
        assert_eq!(
            arns(&list(
                json!({"filters": [{"name": "name", "values": ["al*"]}, {"name": "version", "values": ["2.0.0"]}]})
            )),
            vec!["alpha/2.0.0"]
        );
        assert!(arns(&list(json!({"owner": "Amazon"}))).is_empty());
        let combined = h
            .call(
                Op::ListComponents,
                json!({"byName": true, "filters": [{"name": "version", "values": ["1.0.0"]}]}),
            )
            .unwrap_err();
        assert_eq!(
            combined.kind,
            ErrorKind::InvalidParameterCombinationException
        );

        // Pages of two, then the rest.
        let first = list(json!({"maxResults": 2}));
        assert_eq!(arns(&first), vec!["alpha/1.0.0", "alpha/2.0.0"]);
        let token = first["nextToken"].as_str().unwrap();
        let rest = list(json!({"maxResults": 2, "nextToken": token}));
        assert_eq!(arns(&rest), vec!["beta/1.0.0", "gamma/0.1.0"]);
        assert!(rest.get("nextToken").is_none());

        let builds = h
            .call(
                Op::ListComponentBuildVersions,
                json!({"componentVersionArn": format!("{PREFIX}alpha/1.0.0")}),
            )
            .unwrap();
        let summaries = builds["componentSummaryList"].as_array().unwrap();
        assert_eq!(summaries.len(), 2);
        assert_eq!(summaries[1]["arn"], format!("{PREFIX}alpha/1.0.0/2"));
        let none = h
            .call(
                Op::ListComponentBuildVersions,
                json!({"componentVersionArn": format!("{PREFIX}nope/1.0.0")}),
            )
            .unwrap();
        assert_eq!(none["componentSummaryList"].as_array().unwrap().len(), 0);
        let all = h.call(Op::ListComponentBuildVersions, json!({})).unwrap();
        assert_eq!(all["componentSummaryList"].as_array().unwrap().len(), 5);
    }

    #[test]
    fn dry_run_validates_without_writing_and_delete_removes_a_build() {
        let h = Harness::new();
        let dry = h
            .call(
                Op::CreateComponent,
                json!({"name": "comp", "semanticVersion": "1.0.0", "platform": "Linux",
                       "data": doc(&["build"]), "clientToken": "t1", "dryRun": true}),
            )
            .unwrap_err();
        assert_eq!(
            dry.kind,
            ErrorKind::DryRunOperationException,
            "{}",
            dry.message
        );
        let bad = h
            .call(
                Op::CreateComponent,
                json!({"name": "comp", "semanticVersion": "1.0.0", "platform": "Linux",
                       "data": "schemaVersion: 1.0\n", "clientToken": "t2", "dryRun": true}),
            )
            .unwrap_err();
        assert_eq!(bad.kind, ErrorKind::InvalidRequestException);
        assert_eq!(
            bad.message,
            "data: line 1: phases is required: a list of phases with name and steps"
        );
        let arn = create(&h, "comp", "1.0.0", &doc(&["build"])).unwrap();
        assert!(
            arn.ends_with("/1.0.0/1"),
            "the dry run wrote nothing: {arn}"
        );

        let recipe = "arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/r/1.0.0";
        h.svc_write(|tx| tx.set_references(recipe, std::slice::from_ref(&arn)));
        let in_use = h
            .call(
                Op::DeleteComponent,
                json!({"componentBuildVersionArn": arn}),
            )
            .unwrap_err();
        assert_eq!(in_use.kind, ErrorKind::ResourceDependencyException);
        assert!(in_use.message.contains(recipe), "{}", in_use.message);
        h.svc_write(|tx| tx.set_references(recipe, &[]));
        let deleted = h
            .call(
                Op::DeleteComponent,
                json!({"componentBuildVersionArn": arn}),
            )
            .unwrap();
        assert_eq!(deleted["componentBuildVersionArn"], arn);
        let gone = h
            .call(
                Op::DeleteComponent,
                json!({"componentBuildVersionArn": arn}),
            )
            .unwrap_err();
        assert_eq!(gone.kind, ErrorKind::ResourceNotFoundException);
    }
}
