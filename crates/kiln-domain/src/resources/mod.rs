//! The stored resources. Each type is the domain's own record, separate from the wire types, and
//! names itself by its [`Arn`]. Tags are kept apart from the records (storage has a tag table), so
//! tagging works the same for every kind.
//!
//! Dates are milliseconds since the Unix epoch; the API layer formats them.

use crate::arn::Arn;
use serde::{de::DeserializeOwned, Serialize};

pub mod ami;
pub mod component;
pub mod distribution;
pub mod image;
pub mod import;
pub mod infrastructure;
pub mod lifecycle;
pub mod managed;
pub mod managed_workflows;
pub mod parent;
pub mod pipeline;
pub mod recipe;
pub mod scan;
pub mod scheduled_run;
pub mod sharing;
pub mod workflow;

pub use infrastructure::InfrastructureConfiguration;

/// A record that storage can keep: serialisable, and identified by its ARN.
pub trait Resource: Serialize + DeserializeOwned {
    fn arn(&self) -> &Arn;
}

/// Milliseconds since the Unix epoch.
pub type Millis = i64;
