//! ImportComponent: a plain script (`format: SHELL`, the only format of the model) made into a
//! component.
//!
//! "For the SHELL format, Image Builder wraps your script in a component document with a single
//! step that runs the script." The wrapper (its exact form is not published; this one is
//! inferred, see the wave 2 contract §3.4) is
//!
//! ```yaml
//! name: <component name>
//! schemaVersion: 1.0
//! phases:
//!   - name: build            # test for type TEST
//!     steps:
//!       - name: RunScript
//!         action: ExecuteBash  # ExecutePowerShell on Windows
//!         inputs:
//!           commands: [<the script>]
//! ```
//!
//! The script comes inline (`data`, at most 1,024 characters by the model) or from S3 (`uri`,
//! see `crate::documents`). From there on it is CreateComponent with the wrapped document:
//! versions and builds, "identical content fails", tags, `kmsKeyId`, `changeDescription`
//! defaults and the document checks are that operation's.

use super::components;
use crate::documents::document;
use crate::service::Service;
use kiln_store::Txn;
use kiln_toe::yaml::{Mapping, Value};
use kiln_wire::types::*;
use kiln_wire::{ApiError, ErrorKind, RequestContext};

/// The name of the wrapper's only step.
pub const STEP_NAME: &str = "RunScript";

pub fn import(
    svc: &Service,
    ctx: &RequestContext,
    tx: &mut dyn Txn,
    input: ImportComponentRequest,
) -> Result<ImportComponentResponse, ApiError> {
    let (script, field) = document(ctx, input.data.as_deref(), input.uri.as_deref())?;
    if script.trim().is_empty() {
        return Err(ApiError::invalid_request(format!(
            "{field}: the script is empty"
        )));
    }
    let name = input.name.clone().unwrap_or_default();
    let component_type = input.r#type.as_ref().unwrap_or(&ComponentType::Build);
    let wrapped = wrap_script(&name, script, component_type, input.platform.as_ref())
        .map_err(|e| ApiError::service(format!("wrapping the script of {field}: {e}")))?;
    let request = CreateComponentRequest {
        name: input.name,
        semantic_version: input.semantic_version,
        description: input.description,
        change_description: input.change_description,
        platform: input.platform,
        supported_os_versions: None,
        data: Some(wrapped),
        uri: None,
        kms_key_id: input.kms_key_id,
        tags: input.tags,
        client_token: input.client_token,
        dry_run: None,
    };
    let created = components::create(svc, ctx, tx, request).map_err(|e| {
        // The wrapped document's problems are the script's: name the field it came from.
        match e.message.strip_prefix("data: ") {
            Some(problem) if e.kind == ErrorKind::InvalidRequestException => {
                ApiError::invalid_request(format!(
                    "{field}: the script wrapped in a component document is not valid: {problem}"
                ))
            }
            _ => e,
        }
    })?;
    Ok(ImportComponentResponse {
        request_id: None,
        client_token: created.client_token,
        component_build_version_arn: created.component_build_version_arn,
    })
}

/// The component document that runs `script` in one step of the phase of `component_type`.
pub fn wrap_script(
    name: &str,
    script: &str,
    component_type: &ComponentType,
    platform: Option<&Platform>,
) -> Result<String, kiln_toe::yaml::Error> {
    let phase = match component_type {
        ComponentType::Test => "test",
        ComponentType::Build => "build",
    };
    let action = match platform {
        Some(Platform::Windows) => "ExecutePowerShell",
        _ => "ExecuteBash",
    };
    let mut inputs = Mapping::new();
    inputs.insert(
        "commands".into(),
        Value::Sequence(vec![Value::String(script.to_string())]),
    );
    let mut step = Mapping::new();
    step.insert("name".into(), STEP_NAME.into());
    step.insert("action".into(), action.into());
    step.insert("inputs".into(), Value::Mapping(inputs));
    let mut phase_map = Mapping::new();
    phase_map.insert("name".into(), phase.into());
    phase_map.insert("steps".into(), Value::Sequence(vec![Value::Mapping(step)]));
    let mut doc = Mapping::new();
    doc.insert("name".into(), name.into());
    doc.insert("schemaVersion".into(), Value::Number(1.0.into()));
    doc.insert(
        "phases".into(),
        Value::Sequence(vec![Value::Mapping(phase_map)]),
    );
    kiln_toe::yaml::to_string(&Value::Mapping(doc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_wrapped_in_one_step() {
        let script = "#!/bin/bash\necho \"hello: {x}\"\nexit 0\n";
        let doc = wrap_script("imp", script, &ComponentType::Test, Some(&Platform::Linux)).unwrap();
        let parsed = kiln_toe::document::parse(&doc, kiln_toe::document::Platform::Linux)
            .unwrap_or_else(|e| panic!("{e}\n{doc}"));
        assert_eq!(parsed.phases.len(), 1);
        assert_eq!(parsed.phases[0].name, "test");
        let value: Value = kiln_toe::yaml::from_str(&doc).unwrap();
        assert_eq!(value["schemaVersion"], Value::Number(1.0.into()));
        let step = &value["phases"][0]["steps"][0];
        assert_eq!(step["action"], "ExecuteBash");
        assert_eq!(step["inputs"]["commands"][0], script);
        let windows = wrap_script(
            "imp",
            "Write-Host hi",
            &ComponentType::Build,
            Some(&Platform::Windows),
        )
        .unwrap();
        assert!(windows.contains("ExecutePowerShell") && windows.contains("name: build"));
    }
}
