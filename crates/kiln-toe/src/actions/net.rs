//! (being written)
use super::{ActionContext, ActionFailure, ActionKind, Outputs};
use serde_yaml::Value;

pub fn validate(_kind: ActionKind, _inputs: &Value) -> Result<(), String> {
    Ok(())
}

pub fn run(kind: ActionKind, _ctx: &ActionContext, _inputs: &Value) -> Result<Outputs, ActionFailure> {
    Err(ActionFailure::failed(format!("{} is not implemented yet", kind.name())))
}
