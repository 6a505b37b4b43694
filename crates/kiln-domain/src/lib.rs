//! The Image Builder domain: what the resources are and the rules they obey.
//!
//! Nothing in this crate does IO or knows the wire format. The API crate turns
//! requests into the values defined here, asks these modules whether they are
//! valid and what they resolve to, and hands the results to storage.
//!
//! - [`arn`] parses and formats Image Builder ARNs.
//! - [`name`] normalises resource names into their ARN segment.
//! - [`version`] holds semantic versions, `x` filters and their resolution.
//! - [`schedule`] parses AWS cron and rate expressions and computes next runs.
//! - [`resources`] defines the stored resources.
//! - [`instance_types`] lists the EC2 instance types Kiln knows and their sizes.
//! - [`trust_policy`] reads IAM trust policies (which accounts a role trusts).

pub mod arn;
pub mod error;
pub mod instance_types;
pub mod name;
pub mod resources;
pub mod schedule;
pub mod trust_policy;
pub mod version;

pub use error::DomainError;
